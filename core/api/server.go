package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sandnet/sandnet/sdk"
)

// Server serves the API on a unix socket.
type Server struct {
	mux     *http.ServeMux
	log     hclog.Logger
	http    *http.Server
	path    string
	observe func(route string, code int, d time.Duration) // nil: none; set before Handle
	gid     int                                           // group of the socket; -1: the agent's
}

// NewServer returns a server with no routes; the owner adds them with Handle.
func NewServer(log hclog.Logger) *Server {
	s := &Server{mux: http.NewServeMux(), log: log, gid: -1}
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// HandlerFunc is an API handler: it returns the value to encode as JSON, or
// an error whose sentinel picks the status code.
type HandlerFunc func(r *http.Request) (any, error)

// Handle registers h for pattern (a net/http pattern such as
// "GET /v1/networks/{id}"). Success is answered with status (200 when 0).
func (s *Server) Handle(pattern string, status int, h HandlerFunc) {
	if status == 0 {
		status = http.StatusOK
	}
	observe := s.observe
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		v, err := h(r)
		code := status
		if err != nil {
			code = HTTPStatus(err)
			if code >= 500 {
				s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
			}
			writeJSON(w, code, ErrorBody{Message: err.Error()})
		} else {
			writeJSON(w, status, v)
		}
		if observe != nil {
			observe(pattern, code, time.Since(start))
		}
	})
}

// Observe has fn called after each request a HandlerFunc answered, with
// the route's pattern, the status code and the time taken (for metrics).
// It applies to the routes registered after it.
func (s *Server) Observe(fn func(route string, code int, d time.Duration)) { s.observe = fn }

// HandleHTTP registers a plain http.Handler for pattern, for answers that
// are not one JSON value: a metrics page, a stream of events.
func (s *Server) HandleHTTP(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP answers unknown routes with a JSON 404 and wrong methods with a
// JSON 405, like every other error.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		rec := &statusRecorder{}
		h.ServeHTTP(rec, r)
		code := rec.code
		if code == 0 {
			code = http.StatusNotFound
		}
		if code == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.Header().Get("Allow"))
		}
		writeJSON(w, code, ErrorBody{Message: fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, strings.ToLower(http.StatusText(code)))})
		return
	}
	// Through the mux again, so the request gets its path values.
	s.mux.ServeHTTP(w, r)
}

// Listen creates the unix socket at path with mode 0660 (its directory is
// created 0755 if missing). A stale socket that nobody answers on is
// replaced; a live one is an error.
func (s *Server) Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s: another agent is listening on it: %w", path, sdk.ErrExists)
	}
	_ = os.Remove(path)
	// Create the socket with no access for others from the first moment,
	// then open it to the group.
	old := umask(0o177)
	l, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if s.gid >= 0 {
		if err := os.Chown(path, -1, s.gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("giving %s to group %d: %w", path, s.gid, err)
		}
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	s.path = path
	return l, nil
}

// SetSocketGroup has Listen give the socket to group gid, whose members
// may then use the API (mode 0660), as with docker.sock.
func (s *Server) SetSocketGroup(gid int) { s.gid = gid }

// Serve serves on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, waits for requests in flight (until ctx ends)
// and removes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if s.path != "" {
		_ = os.Remove(s.path)
	}
	return err
}

// Decode reads a JSON request body into v. An unknown field, a wrong type
// or trailing data is an error wrapping sdk.ErrInvalid that names the field.
func Decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return fmt.Errorf("field %q: expected %s, got JSON %s: %w", te.Field, te.Type, te.Value, sdk.ErrInvalid)
		case errors.Is(err, io.EOF):
			return fmt.Errorf("request body: empty, expected a JSON object: %w", sdk.ErrInvalid)
		default:
			return fmt.Errorf("request body: %s: %w", strings.TrimPrefix(err.Error(), "json: "), sdk.ErrInvalid)
		}
	}
	if dec.More() {
		return fmt.Errorf("request body: data after the JSON object: %w", sdk.ErrInvalid)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// statusRecorder captures the status the mux's own not-found and
// method-not-allowed handlers would write.
type statusRecorder struct {
	code int
	h    http.Header
}

func (r *statusRecorder) Header() http.Header {
	if r.h == nil {
		r.h = http.Header{}
	}
	return r.h
}
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(code int)        { r.code = code }
