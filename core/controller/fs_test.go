package controller

import (
	"os"
	"syscall"
	"testing"
)

var osReadFile = os.ReadFile

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
