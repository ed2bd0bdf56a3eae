package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/sandnet/sandnet/sdk"
)

// ErrTooLarge is a request body over MaxBody: 413.
var ErrTooLarge = errors.New("request body too large")

var statusOf = []struct {
	err    error
	status int
}{
	{ErrTooLarge, http.StatusRequestEntityTooLarge},
	{sdk.ErrInvalid, http.StatusBadRequest},
	{sdk.ErrForbidden, http.StatusForbidden},
	{sdk.ErrNotFound, http.StatusNotFound},
	{sdk.ErrExists, http.StatusConflict},
	{sdk.ErrConflict, http.StatusConflict},
	{sdk.ErrUnavailable, http.StatusServiceUnavailable},
	{sdk.ErrNotSupported, http.StatusNotImplemented},
	{sdk.ErrTimeout, http.StatusGatewayTimeout},
	{context.DeadlineExceeded, http.StatusGatewayTimeout},
}

// Message is err's text without the error kind it ends with (`network
// "x" not found: not found`): the kind is the status code, and says
// nothing more to someone reading the message.
func Message(err error) string {
	msg := err.Error()
	for _, s := range statusOf {
		if trimmed, ok := strings.CutSuffix(msg, ": "+s.err.Error()); ok && trimmed != "" && s.err != context.DeadlineExceeded {
			return trimmed
		}
	}
	return msg
}

// HTTPStatus returns the status code for err.
func HTTPStatus(err error) int {
	for _, s := range statusOf {
		if errors.Is(err, s.err) {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

// Error is an error the API answered with.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel that matches the status code, so errors.Is
// works on the client side; 409 matches sdk.ErrExists and sdk.ErrConflict.
func (e *Error) Unwrap() []error {
	var out []error
	for _, s := range statusOf {
		if s.status == e.Status {
			out = append(out, s.err)
		}
	}
	return out
}
