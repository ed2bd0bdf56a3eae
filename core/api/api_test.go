package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sandnet/sandnet/sdk"
)

type thing struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// serve starts a server with a few routes on a socket in a temp dir.
func serve(t *testing.T) (*Client, string) {
	t.Helper()
	s := NewServer(hclog.NewNullLogger())
	s.Handle("GET /v1/things/{name}", 0, func(r *http.Request) (any, error) {
		switch name := r.PathValue("name"); name {
		case "missing":
			return nil, fmt.Errorf("thing %q: %w", name, sdk.ErrNotFound)
		case "busy":
			return nil, fmt.Errorf("thing %q: %w", name, sdk.ErrConflict)
		case "boom":
			return nil, errors.New("boom")
		default:
			return thing{Name: name}, nil
		}
	})
	s.Handle("POST /v1/things", http.StatusCreated, func(r *http.Request) (any, error) {
		var in thing
		if err := Decode(r, &in); err != nil {
			return nil, err
		}
		return in, nil
	})
	sock := filepath.Join(t.TempDir(), "run", "api.sock")
	l, err := s.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return NewClient(sock), sock
}

func TestSocketMode(t *testing.T) {
	_, sock := serve(t)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode = %v, want socket with 0660", fi.Mode())
	}
}

func TestSecondListenerRefused(t *testing.T) {
	_, sock := serve(t)
	if _, err := NewServer(hclog.NewNullLogger()).Listen(sock); !errors.Is(err, sdk.ErrExists) {
		t.Fatalf("second Listen on a live socket: err = %v, want ErrExists", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := NewServer(hclog.NewNullLogger()).Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale file: %v", err)
	}
	l.Close()
}

func TestErrors(t *testing.T) {
	c, _ := serve(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		is     error
		msg    string
	}{
		{"not found", "GET", "/v1/things/missing", nil, 404, sdk.ErrNotFound, `thing "missing": not found`},
		{"conflict", "GET", "/v1/things/busy", nil, 409, sdk.ErrConflict, `thing "busy": conflict`},
		{"internal", "GET", "/v1/things/boom", nil, 500, nil, "boom"},
		{"unknown route", "GET", "/v1/nothing", nil, 404, sdk.ErrNotFound, "GET /v1/nothing: not found"},
		{"wrong method", "DELETE", "/v1/things", nil, 405, nil, "DELETE /v1/things: method not allowed"},
		{"unknown field", "POST", "/v1/things", map[string]any{"name": "x", "colour": "red"}, 400, sdk.ErrInvalid, `colour: unknown field`},
		{"wrong type", "POST", "/v1/things", map[string]any{"name": "x", "count": "many"}, 400, sdk.ErrInvalid, `count: expected a JSON number, got JSON string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Do(ctx, tt.method, tt.path, tt.body, nil)
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if ae.Status != tt.status {
				t.Errorf("status = %d, want %d", ae.Status, tt.status)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if !strings.Contains(ae.Message, tt.msg) {
				t.Errorf("message = %q, want it to contain %q", ae.Message, tt.msg)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	c, _ := serve(t)
	var out thing
	if err := c.Do(context.Background(), "POST", "/v1/things", thing{Name: "a", Count: 3}, &out); err != nil {
		t.Fatal(err)
	}
	if out != (thing{Name: "a", Count: 3}) {
		t.Fatalf("round trip = %+v", out)
	}
}

func TestUnreachableAgent(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "nobody.sock"))
	_, err := c.Version(context.Background())
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

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

// TestMessage: an error's text loses the error kind it ends with, which
// its status code carries, and nothing else.
func TestMessage(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("network %q not found: %w", "x", sdk.ErrNotFound):             `network "x" not found`,
		fmt.Errorf("container c1 already has sandbox abc: %w", sdk.ErrForbidden): "container c1 already has sandbox abc",
		fmt.Errorf("waiting: %w", context.DeadlineExceeded):                      "waiting: context deadline exceeded",
		sdk.ErrConflict:          "conflict",
		errors.New("plain text"): "plain text",
	} {
		if got := Message(err); got != want {
			t.Errorf("Message(%q) = %q, want %q", err, got, want)
		}
	}
}
