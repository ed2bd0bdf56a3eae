package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The statuses the plugin tells apart.
const (
	statusBadRequest  = 400
	statusForbidden   = 403
	statusNotFound    = 404
	statusConflict    = 409
	statusUnavailable = 503
)

// maxBody bounds an answer the plugin reads (a sandbox listing for GC is
// the largest).
const maxBody = 64 << 20

// roundTrip sends one HTTP/1.1 request over the unix socket and returns
// the answer's status and body. It asks the server to close the
// connection, so the answer ends at EOF or at its Content-Length; a
// chunked answer is decoded.
func roundTrip(socket, method, path string, body []byte, timeout time.Duration) (int, []byte, error) {
	conn, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, nil, err
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: sandnet\r\nConnection: close\r\nAccept: application/json\r\n", method, path)
	if body != nil {
		fmt.Fprintf(&req, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return 0, nil, err
	}
	return readResponse(bufio.NewReader(conn))
}

// readResponse reads an HTTP/1.1 answer: status line, headers, body.
func readResponse(r *bufio.Reader) (int, []byte, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer's status: %w", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return 0, nil, fmt.Errorf("malformed status line %q", strings.TrimSpace(line))
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, nil, fmt.Errorf("malformed status line %q", strings.TrimSpace(line))
	}
	length, chunked := int64(-1), false
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("reading the answer's headers: %w", err)
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		k, v, _ := strings.Cut(h, ":")
		switch v = strings.TrimSpace(v); strings.ToLower(k) {
		case "content-length":
			if length, err = strconv.ParseInt(v, 10, 64); err != nil || length < 0 || length > maxBody {
				return 0, nil, fmt.Errorf("bad Content-Length %q", v)
			}
		case "transfer-encoding":
			chunked = strings.EqualFold(v, "chunked")
		}
	}
	var body []byte
	switch {
	case chunked:
		body, err = readChunked(r)
	case length >= 0:
		body = make([]byte, length)
		_, err = io.ReadFull(r, body)
	default:
		body, err = io.ReadAll(io.LimitReader(r, maxBody))
	}
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer's body: %w", err)
	}
	return status, body, nil
}

// readChunked decodes a chunked body (RFC 9112, section 7.1), trailers
// ignored.
func readChunked(r *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		sizeStr, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		size, err := strconv.ParseInt(sizeStr, 16, 64)
		if err != nil || size < 0 || int64(len(body))+size > maxBody {
			return nil, fmt.Errorf("bad chunk size %q", sizeStr)
		}
		if size == 0 {
			return body, nil // the trailers and the final CRLF are not needed
		}
		start := len(body)
		body = append(body, make([]byte, size)...)
		if _, err := io.ReadFull(r, body[start:]); err != nil {
			return nil, err
		}
		if crlf, err := r.ReadString('\n'); err != nil || strings.TrimRight(crlf, "\r\n") != "" {
			return nil, errors.New("a chunk does not end with CRLF")
		}
	}
}
