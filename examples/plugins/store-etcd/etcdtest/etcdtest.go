// Package etcdtest runs a real etcd server (Debian's etcd-server, 3.4, at
// /usr/bin/etcd) for tests: a one-member cluster on free loopback ports
// with its data in a temporary directory on tmpfs, stopped and removed
// when the test ends.
package etcdtest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultBinary is where Debian's etcd-server package puts the server.
const DefaultBinary = "/usr/bin/etcd"

// Binary returns the etcd server binary: $SANDNET_ETCD, else
// DefaultBinary. When it is missing the test is skipped, unless
// SANDNET_REQUIRE_ETCD=1 (as in CI), which makes it fail.
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("SANDNET_ETCD")
	if bin == "" {
		bin = DefaultBinary
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("no etcd server at %s (apt-get install etcd-server, or set SANDNET_ETCD): %v", bin, err)
		if os.Getenv("SANDNET_REQUIRE_ETCD") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// Server is an etcd server a test started.
type Server struct {
	// Endpoint is the client address, host:port.
	Endpoint        string
	clientURL, peer string
	cmd             *exec.Cmd
	log             *syncBuffer
	done            chan struct{}
}

// Start starts a server and waits until it answers its health check.
func Start(t testing.TB) *Server {
	t.Helper()
	client, peer := freePort(t), freePort(t)
	s := &Server{
		Endpoint:  "127.0.0.1:" + strconv.Itoa(client),
		clientURL: "http://127.0.0.1:" + strconv.Itoa(client),
		peer:      "http://127.0.0.1:" + strconv.Itoa(peer),
		log:       &syncBuffer{},
	}
	s.launch(t)
	return s
}

// RestartEmpty kills the server and starts another, with an empty data
// directory, on the same addresses: another cluster, whose revisions
// start again from 1, where a client that reconnects to the address
// expects the old one.
func (s *Server) RestartEmpty(t testing.TB) {
	t.Helper()
	s.Stop()
	s.launch(t)
}

// launch starts etcd on s's addresses with a new data directory, and
// waits until it answers its health check.
func (s *Server) launch(t testing.TB) {
	t.Helper()
	bin := Binary(t)
	// tmpfs: etcd fsyncs every write, which a disk makes slow.
	dir, err := os.MkdirTemp("/dev/shm", "sandnet-etcd-")
	if err != nil {
		dir = t.TempDir()
	}
	s.done = make(chan struct{})
	s.cmd = exec.Command(bin,
		"--name", "test", "--data-dir", dir,
		"--listen-client-urls", s.clientURL, "--advertise-client-urls", s.clientURL,
		"--listen-peer-urls", s.peer, "--initial-advertise-peer-urls", s.peer,
		"--initial-cluster", "test="+s.peer, "--log-level", "warn", "--logger", "zap")
	s.cmd.Env = []string{} // none of the test's ETCD_* variables
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("starting etcd: %v", err)
	}
	done := s.done
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(done) }(s.cmd)
	t.Cleanup(func() {
		s.Stop()
		os.RemoveAll(dir)
		if t.Failed() {
			t.Logf("etcd log:\n%s", s.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.clientURL + "/health")
		if err == nil {
			ok := resp.StatusCode == http.StatusOK
			resp.Body.Close()
			if ok {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("etcd exited before it was ready:\n%s", s.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not healthy after 30s:\n%s", s.log.String())
		}
	}
}

// Pause stops the etcd process (SIGSTOP: its sockets stay open, nothing
// answers) until Resume, and returns once the kernel says it is stopped.
func (s *Server) Pause() {
	_ = s.cmd.Process.Signal(syscall.SIGSTOP)
	stat := fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid)
	for range 500 {
		if b, err := os.ReadFile(stat); err != nil || strings.Contains(string(b), ") T ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Resume lets a paused etcd go on.
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Stop kills the server (by its PID) and waits for it; safe to call twice.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
