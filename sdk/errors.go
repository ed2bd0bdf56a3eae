package sdk

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. A plugin returns them (wrapped or not); they cross the
// wire as gRPC status codes and come back as the same sentinels, so
// errors.Is works on the host.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInvalid      = errors.New("invalid argument")
	ErrConflict     = errors.New("conflict")
	ErrForbidden    = errors.New("forbidden")
	ErrUnavailable  = errors.New("unavailable")
	ErrNotSupported = errors.New("not supported")
	ErrTimeout      = errors.New("timeout")
)

var codeOf = []struct {
	err  error
	code codes.Code
}{
	{ErrNotFound, codes.NotFound},
	{ErrExists, codes.AlreadyExists},
	{ErrInvalid, codes.InvalidArgument},
	{ErrConflict, codes.Aborted},
	{ErrForbidden, codes.PermissionDenied},
	{ErrUnavailable, codes.Unavailable},
	{ErrNotSupported, codes.Unimplemented},
	{ErrTimeout, codes.DeadlineExceeded},
}

// ToStatus turns err into a gRPC status error whose code matches the
// sentinel err wraps (codes.Unknown when it wraps none). Plugin servers
// call it on every error they return.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return status.Error(c.code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// FromStatus turns a gRPC status error back into an error that wraps the
// matching sentinel and keeps the plugin's message. Plugin clients call it
// on every error they receive.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, c := range codeOf {
		if st.Code() == c.code {
			return &wireError{msg: st.Message(), sentinel: c.err}
		}
	}
	if st.Code() == codes.Canceled && st.Message() == connClosing {
		// Not the caller giving up: the host closed its connection to a
		// plugin process that died, and calls in flight end so.
		return &wireError{msg: st.Message(), sentinel: ErrUnavailable}
	}
	if st.Code() == codes.Canceled {
		return &wireError{msg: st.Message(), sentinel: context.Canceled}
	}
	return errors.New(st.Message())
}

// connClosing is the message of the Canceled status gRPC gives calls on a
// client connection being closed (grpc.ErrClientConnClosing).
const connClosing = "grpc: the client connection is closing"

// wireError is an error that came over the wire: its text is the plugin's,
// and it matches the sentinel of its status code.
type wireError struct {
	msg      string
	sentinel error
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.sentinel }
