package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sandnet/sandnet/core/events"
)

// EventStream is an open GET /v1/events.
type EventStream struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// Events opens the agent's event stream with the query q (type, network,
// container, plugin, since, buffer: see the route's documentation). It
// lasts until ctx ends, Close, or the agent stops.
func (c *Client) Events(ctx context.Context, q url.Values) (*EventStream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://sandnet/v1/events?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.dialError(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, errorFrom(resp)
	}
	return &EventStream{body: resp.Body, dec: json.NewDecoder(resp.Body)}, nil
}

// Next returns the next event; io.EOF when the agent ended the stream.
func (s *EventStream) Next() (events.Event, error) {
	var e events.Event
	err := s.dec.Decode(&e)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return e, err
}

// Close closes the stream.
func (s *EventStream) Close() error { return s.body.Close() }

// Metrics returns the agent's metrics in the Prometheus text format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://sandnet/v1/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", c.dialError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", errorFrom(resp)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("reading metrics: %w", err)
	}
	return string(b), nil
}

// errorFrom turns an error answer into *Error.
func errorFrom(resp *http.Response) error {
	var eb ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &eb) != nil || eb.Message == "" {
		eb.Message = strings.TrimSpace(string(b))
	}
	return &Error{Status: resp.StatusCode, Message: eb.Message}
}
