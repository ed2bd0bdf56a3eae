package api

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestSlowBodyCut: a client that sends its headers and then its body a
// byte at a time is cut off after the body timeout instead of holding its
// connection (and a file descriptor of the agent) for as long as it
// likes; a handler that runs long once it has read its body keeps its
// request's context, the deadline lifted.
func TestSlowBodyCut(t *testing.T) {
	old := bodyTimeout
	bodyTimeout = 300 * time.Millisecond
	t.Cleanup(func() { bodyTimeout = old })
	s := NewServer(hclog.NewNullLogger())
	long := make(chan error, 1)
	s.Handle("POST /v1/things", http.StatusCreated, func(r *http.Request) (any, error) {
		var in thing
		if err := Decode(r, &in); err != nil {
			return nil, err
		}
		if in.Name == "long" {
			time.Sleep(3 * bodyTimeout)
			long <- r.Context().Err()
		}
		return in, nil
	})
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := s.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })

	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("POST /v1/things HTTP/1.1\r\nHost: sandnet\r\nContent-Length: 100\r\n\r\n{")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	status, _ := bufio.NewReader(conn).ReadString('\n')
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the slow body held its connection %v", took)
	}
	if status != "" && !strings.Contains(status, " 400 ") {
		t.Fatalf("a body cut off: %q, want 400 or the connection closed", status)
	}

	var out thing
	if err := NewClient(sock).Do(context.Background(), http.MethodPost, "/v1/things", thing{Name: "long"}, &out); err != nil {
		t.Fatalf("a long request with its body read in time: %v", err)
	}
	if err := <-long; err != nil {
		t.Fatalf("the long handler's context ended: %v", err)
	}
}
