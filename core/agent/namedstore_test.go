package agent

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// deadStore fails every call as a store plugin killed mid-call does.
type deadStore struct{ store.Store }

var transportErr = sdk.FromStatus(status.Error(codes.Unavailable, "error reading from server: EOF"))

func (deadStore) Get(context.Context, string) (*pb.KVPair, error) { return nil, transportErr }
func (deadStore) Txn(context.Context, []*pb.TxnOp) ([]*pb.KVPair, error) {
	return nil, transportErr
}
func (deadStore) List(context.Context, string) ([]*pb.KVPair, error) {
	return nil, sdk.FromStatus(status.Error(codes.NotFound, "nothing"))
}

func TestStoreErrorsNameThePlugin(t *testing.T) {
	s := namedStore{Store: deadStore{}, name: "bolt"}
	const want = `store plugin "bolt" unavailable: error reading from server: EOF`
	_, err := s.Get(t.Context(), "k")
	if err == nil || err.Error() != want || !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Get = %v, want %q wrapping ErrUnavailable", err, want)
	}
	if _, err := s.Txn(t.Context(), nil); err == nil || err.Error() != want {
		t.Fatalf("Txn = %v, want %q", err, want)
	}
	if _, err := s.List(t.Context(), "p"); err == nil || err.Error() != "nothing" || !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("List = %v: errors other than unavailable pass unchanged", err)
	}
}
