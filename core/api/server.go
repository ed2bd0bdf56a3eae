package api

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"

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
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: IdleTimeout}
	return s
}

// The API's bounds on its clients, so that a client holding connections
// (idle, or sending a body byte by byte) cannot take the agent's file
// descriptors, which its namespaces and plugins need: a request's headers
// must arrive within 10 s and its body within bodyTimeout (30 s), a
// keep-alive connection idle for IdleTimeout is closed, and at most
// maxConns connections are served at once (more wait to be accepted).
const IdleTimeout = 2 * time.Minute

var bodyTimeout = 30 * time.Second // a variable for tests

// maxConns is a quarter of the agent's open-file limit, within 64..4096.
func maxConns() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	return int(min(max(lim.Cur/4, 64), 4096))
}

// MaxStreams is how many event streams the agent serves at once: half of
// its connections, so that clients holding streams open cannot keep
// every other request (a CNI ADD, an OCI hook) waiting to be accepted.
func MaxStreams() int { return maxConns() / 2 }

// HandlerFunc is an API handler: it returns the value to encode as JSON, or
// an error whose sentinel picks the status code.
type HandlerFunc func(r *http.Request) (any, error)

// Handle registers h for pattern (a net/http pattern such as
// "GET /v1/networks/{id}"). Success is answered with status (200 when 0).
// A request with query parameters is refused with 400 naming the first:
// the route takes none (HandleQuery registers one that reads its own).
func (s *Server) Handle(pattern string, status int, h HandlerFunc) {
	s.handle(pattern, status, h, false)
}

// HandleQuery is Handle for a route whose handler reads, and checks, its
// query parameters.
func (s *Server) HandleQuery(pattern string, status int, h HandlerFunc) {
	s.handle(pattern, status, h, true)
}

func (s *Server) handle(pattern string, status int, h HandlerFunc, query bool) {
	if status == 0 {
		status = http.StatusOK
	}
	observe := s.observe
	if !query {
		h = withoutQuery(pattern, h)
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		bodyDeadline(w, r)
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

// withoutQuery refuses a request to h with query parameters, naming the
// first in order: a misspelt filter or option must not pass for none.
func withoutQuery(pattern string, h HandlerFunc) HandlerFunc {
	route := pattern[strings.IndexByte(pattern, ' ')+1:]
	return func(r *http.Request) (any, error) {
		if r.URL.RawQuery != "" {
			name, _, _ := strings.Cut(r.URL.RawQuery, "&")
			name, _, _ = strings.Cut(name, "=")
			if n, err := url.QueryUnescape(name); err == nil {
				name = n
			}
			return nil, fmt.Errorf("%q: %s takes no parameters: %w", clipString(name), route, sdk.ErrInvalid)
		}
		return h(r)
	}
}

// bodyDeadline bounds the reading of r's body to bodyTimeout. The deadline
// is lifted as soon as the body has been read: past it, the server reads
// the connection only to notice the client leaving, and a deadline there
// would end the request's context during a long handler.
func bodyDeadline(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(bodyTimeout)) != nil {
		return
	}
	r.Body = &liftOnEnd{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
}

// liftOnEnd calls lift once its reader has been read to its end (EOF). A
// body cut short keeps the deadline: the server, discarding the rest of
// it, gives up at the deadline and closes the connection.
type liftOnEnd struct {
	io.ReadCloser
	lift func()
}

func (l *liftOnEnd) Read(p []byte) (int, error) {
	n, err := l.ReadCloser.Read(p)
	if err == io.EOF && l.lift != nil {
		l.lift()
		l.lift = nil
	}
	return n, err
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
	err := s.http.Serve(netutil.LimitListener(l, maxConns()))
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

// MaxBody is the largest request body the API reads.
const MaxBody = 1 << 20

// maxDrain bounds how much of an oversized body is read and discarded so
// that a client which writes its whole body before reading gets the 413
// instead of a broken pipe; beyond it the connection is closed.
const maxDrain = 64 << 20

// Decode reads a JSON request body into v. Every error wraps
// sdk.ErrInvalid and names the JSON path of the field as the client wrote
// it (networks[0].priority, dns[1], options.zzz): an unknown field, a
// wrong type, a value its type refuses (an address that does not parse),
// a duplicate field, invalid UTF-8 or trailing data. A body over MaxBody
// is an error wrapping ErrTooLarge (413).
func Decode(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return DecodeBytes(body, v)
}

// DecodeOptional is Decode for a route whose body may be left out: an
// empty body leaves v as it is; anything else is held to Decode's rules.
func DecodeOptional(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil || len(bytes.TrimSpace(body)) == 0 {
		return err
	}
	return DecodeBytes(body, v)
}

// readBody reads a request body of at most MaxBody bytes.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("request body: %v: %w", err, sdk.ErrInvalid)
	}
	if len(body) > MaxBody {
		_, _ = io.CopyN(io.Discard, r.Body, maxDrain)
		return nil, fmt.Errorf("request body: larger than the limit of %d bytes (1 MiB): %w", MaxBody, ErrTooLarge)
	}
	return body, nil
}

// DecodeBytes is Decode over a body already read.
func DecodeBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("request body: empty, expected a JSON object: %w", sdk.ErrInvalid)
	}
	err := jsonv2.Unmarshal(body, v, jsonv2.RejectUnknownMembers(true))
	if err == nil {
		return nil
	}
	var se *jsonv2.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &se):
		at := fieldPath(se.JSONPointer)
		switch {
		case errors.Is(se.Err, jsonv2.ErrUnknownName):
			return fmt.Errorf("%s: unknown field: %w", at, sdk.ErrInvalid)
		case se.Err != nil && se.JSONKind == '"' && textKinds[se.GoType] != "":
			return fmt.Errorf("%s: %s is not %s: %w", at, clip(valueAt(body, se.ByteOffset)), textKinds[se.GoType], sdk.ErrInvalid)
		case se.Err != nil && se.JSONKind != '"' && textKinds[se.GoType] != "":
			return fmt.Errorf("%s: expected a JSON string (%s), got JSON %s: %w", at, textKinds[se.GoType], kindName(se.JSONKind), sdk.ErrInvalid)
		case se.Err != nil && se.JSONKind != 0:
			return fmt.Errorf("%s: bad value %s: %v: %w", at, clip(valueAt(body, se.ByteOffset)), se.Err, sdk.ErrInvalid)
		case se.Err != nil:
			return fmt.Errorf("%s: %v: %w", at, se.Err, sdk.ErrInvalid)
		default:
			return fmt.Errorf("%s: expected %s, got JSON %s: %w", at, jsonKindOf(se.GoType), kindName(se.JSONKind), sdk.ErrInvalid)
		}
	case errors.As(err, &syn):
		return fmt.Errorf("%s: invalid JSON at byte %d: %v: %w", fieldPath(syn.JSONPointer), syn.ByteOffset, syn.Err, sdk.ErrInvalid)
	default:
		return fmt.Errorf("request body: %v: %w", err, sdk.ErrInvalid)
	}
}

// fieldPath writes a JSON pointer (/networks/0/priority) the way a client
// names the field (networks[0].priority); the empty pointer is the body.
// A name that is not plain — a space, a quote, a bracket, a control
// character, over 64 bytes — is written quoted and clipped
// (options["a b"]), so that the path stays one line a reader can trust.
func fieldPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.ParseUint(tok, 10, 32); err == nil && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if !plainName(tok) {
			b.WriteString("[" + strconv.Quote(clipString(tok)) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	if b.Len() == 0 {
		return "request body"
	}
	if b.Len() > maxPathLen {
		// A body nested thousands deep: the path's end names the
		// field, its middle is the same brackets again and again.
		path := b.String()
		return path[:maxPathLen/2] + "…" + path[len(path)-maxPathLen/2:]
	}
	return b.String()
}

// maxPathLen bounds a field path in a message (fieldPath).
const maxPathLen = 256

// plainName reports whether a member name can stand in a path as it is:
// 1 to 64 printable ASCII characters other than space, quotes and
// brackets.
func plainName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '[' || c == ']' {
			return false
		}
	}
	return true
}

// clipString shortens s to 64 bytes (on a rune boundary) for a message.
func clipString(s string) string {
	if len(s) <= 64 {
		return s
	}
	i := 64
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// jsonKindOf says what JSON a Go type is decoded from.
func jsonKindOf(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		return "a JSON string"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	case reflect.Slice, reflect.Array:
		return "a JSON array"
	case reflect.String:
		return "a JSON string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a JSON number"
	}
	return t.String()
}

// kindName names a JSON kind in words.
func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "string"
	case '0':
		return "number"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "value"
}

// textKinds names the values of the types a request decodes from JSON
// strings of their own syntax.
var textKinds = map[reflect.Type]string{
	reflect.TypeFor[netip.Addr]():     "an IP address",
	reflect.TypeFor[netip.Prefix]():   "a CIDR prefix",
	reflect.TypeFor[netip.AddrPort](): "an IP address and port",
}

// valueAt is the JSON value that starts at offset off of body, or an
// empty one.
func valueAt(body []byte, off int64) jsontext.Value {
	if off < 0 || off >= int64(len(body)) {
		return nil
	}
	v, err := jsontext.NewDecoder(bytes.NewReader(body[off:])).ReadValue()
	if err != nil {
		return nil
	}
	return v
}

// clip quotes at most 64 bytes of a value for an error message.
func clip(v jsontext.Value) string {
	if len(v) > 64 {
		return strconv.Quote(string(v[:64])) + "…"
	}
	if strings.ContainsFunc(string(v), unicode.IsControl) {
		// A DEL or a C1 control, which JSON allows raw in a string:
		// an error message holds none.
		return strconv.Quote(string(v))
	}
	return string(v)
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
