package main

import (
	"bufio"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRoundTrip runs the plugin's HTTP client against Go's own server on a
// unix socket, as the agent serves: small answers (Content-Length), large
// ones (chunked), errors, and a request body that arrives whole.
func TestRoundTrip(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 100_000)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /small", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"id":"1"}`)) })
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(big); i += 1000 {
			_, _ = w.Write([]byte(big[i : i+1000]))
			w.(http.Flusher).Flush() // forces chunked encoding
		}
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = bufio.NewReader(r.Body).WriteTo(w)
	})
	mux.HandleFunc("GET /missing", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"message":"no such thing"}`, http.StatusNotFound)
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/small", "", 200, `{"id":"1"}`},
		{"GET", "/big", "", 200, big},
		{"POST", "/echo", `{"a":"b"}`, 201, `{"a":"b"}`},
		{"GET", "/missing", "", 404, "{\"message\":\"no such thing\"}\n"},
	} {
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		status, got, err := roundTrip(sock, tc.method, tc.path, body, 5*time.Second)
		if err != nil || status != tc.status || string(got) != tc.want {
			t.Errorf("%s %s: status %d, %d bytes, %v; want %d, %d bytes", tc.method, tc.path, status, len(got), err, tc.status, len(tc.want))
		}
	}
	if _, _, err := roundTrip(filepath.Join(t.TempDir(), "none.sock"), "GET", "/", nil, time.Second); err == nil {
		t.Error("a missing socket: no error")
	}
}

func TestReadResponseRefusesGarbage(t *testing.T) {
	for _, raw := range []string{
		"garbage\r\n\r\n",
		"HTTP/1.1 abc OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	} {
		if _, _, err := readResponse(bufio.NewReader(strings.NewReader(raw))); err == nil {
			t.Errorf("%q: accepted", raw)
		}
	}
}
