package plugincheck

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStoreCheck: only a check known to be a store's skips the throwaway
// namespace; anything unknown is treated as a driver's.
func TestStoreCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	store := write("store.hcl", "store \"etcd\" {\n  config {\n    endpoints = [\"127.0.0.1:2379\"]\n  }\n}\n")
	both := write("both.hcl", "store \"bolt\" {}\ndriver \"bridge\" {}\n")
	broken := write("broken.hcl", "store \"bolt\" {\n")
	for _, tc := range []struct {
		name string
		o    Options
		want bool
	}{
		{"kind store", Options{Kind: "store"}, true},
		{"kind driver, store file", Options{Kind: "driver", ConfigFile: store}, false},
		{"store block only", Options{ConfigFile: store}, true},
		{"store and driver blocks", Options{ConfigFile: both}, false},
		{"broken file", Options{ConfigFile: broken}, false},
		{"nothing known", Options{}, false},
	} {
		if got := StoreCheck(tc.o); got != tc.want {
			t.Errorf("%s: StoreCheck = %v, want %v", tc.name, got, tc.want)
		}
	}
}
