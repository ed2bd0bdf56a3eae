package store

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// GRPCPlugin is the go-plugin plugin.GRPCPlugin for stores. Plugins get it
// through Serve; the host uses it with Impl left nil.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Info sdk.Info
	Impl Store
}

// GRPCServer registers the Plugin and Store services.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	return Register(s, p.Info, p.Impl)
}

// GRPCClient returns a *Client.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewClient(c), nil
}

// Register registers the Plugin and Store services for impl on s.
func Register(s *grpc.Server, info sdk.Info, impl Store) error {
	ps, err := sdk.NewPluginServer(info, sdk.KindStore, impl)
	if err != nil {
		return err
	}
	pb.RegisterPluginServer(s, ps)
	pb.RegisterStoreServer(s, &server{impl: impl})
	return nil
}

// server adapts a Store to the generated gRPC server interface.
type server struct {
	pb.UnimplementedStoreServer
	impl Store
}

func (s *server) Get(ctx context.Context, req *pb.KeyRequest) (*pb.KVPair, error) {
	kv, err := s.impl.Get(ctx, req.GetKey())
	return kv, sdk.ToStatus(err)
}

func (s *server) Put(ctx context.Context, req *pb.PutRequest) (*pb.KVPair, error) {
	kv, err := s.impl.Put(ctx, req.GetKey(), req.GetValue())
	return kv, sdk.ToStatus(err)
}

func (s *server) AtomicPut(ctx context.Context, req *pb.AtomicPutRequest) (*pb.KVPair, error) {
	kv, err := s.impl.AtomicPut(ctx, req.GetKey(), req.GetValue(), req.GetPreviousIndex())
	return kv, sdk.ToStatus(err)
}

func (s *server) Delete(ctx context.Context, req *pb.KeyRequest) (*pb.Empty, error) {
	return &pb.Empty{}, sdk.ToStatus(s.impl.Delete(ctx, req.GetKey()))
}

func (s *server) AtomicDelete(ctx context.Context, req *pb.AtomicDeleteRequest) (*pb.Empty, error) {
	return &pb.Empty{}, sdk.ToStatus(s.impl.AtomicDelete(ctx, req.GetKey(), req.GetPreviousIndex()))
}

func (s *server) List(ctx context.Context, req *pb.KeyRequest) (*pb.KVList, error) {
	kvs, err := s.impl.List(ctx, req.GetKey())
	return &pb.KVList{Pairs: kvs}, sdk.ToStatus(err)
}

func (s *server) DeleteTree(ctx context.Context, req *pb.KeyRequest) (*pb.Empty, error) {
	return &pb.Empty{}, sdk.ToStatus(s.impl.DeleteTree(ctx, req.GetKey()))
}

func (s *server) Txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	kvs, err := s.impl.Txn(ctx, req.GetOps())
	return &pb.TxnResponse{Results: kvs}, sdk.ToStatus(err)
}

func (s *server) Watch(req *pb.KeyRequest, stream pb.Store_WatchServer) error {
	events, err := s.impl.Watch(stream.Context(), req.GetKey())
	if err != nil {
		return sdk.ToStatus(err)
	}
	for ev := range events {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) LeaseGrant(ctx context.Context, req *pb.LeaseGrantRequest) (*pb.Lease, error) {
	l, ok := s.impl.(Leaser)
	if !ok {
		return nil, sdk.ToStatus(errNoLeases)
	}
	lease, err := l.LeaseGrant(ctx, time.Duration(req.GetTtlMs())*time.Millisecond)
	return lease, sdk.ToStatus(err)
}

func (s *server) LeaseRenew(ctx context.Context, req *pb.LeaseRequest) (*pb.Lease, error) {
	l, ok := s.impl.(Leaser)
	if !ok {
		return nil, sdk.ToStatus(errNoLeases)
	}
	lease, err := l.LeaseRenew(ctx, req.GetId())
	return lease, sdk.ToStatus(err)
}

func (s *server) LeasePut(ctx context.Context, req *pb.LeasePutRequest) (*pb.KVPair, error) {
	l, ok := s.impl.(Leaser)
	if !ok {
		return nil, sdk.ToStatus(errNoLeases)
	}
	kv, err := l.LeasePut(ctx, req.GetKey(), req.GetValue(), req.GetLease())
	return kv, sdk.ToStatus(err)
}

// errNoLeases answers the lease calls of a store that is no Leaser.
var errNoLeases = fmt.Errorf("this store has no leases: %w", sdk.ErrNotSupported)

func (s *server) Close(ctx context.Context, _ *pb.Empty) (*pb.Empty, error) {
	return &pb.Empty{}, sdk.ToStatus(s.impl.Close(ctx))
}

// Client is the host's side of a store plugin. It implements Store.
type Client struct {
	*sdk.PluginClient
	c pb.StoreClient
}

var (
	_ Store  = (*Client)(nil)
	_ Leaser = (*Client)(nil)
)

// NewClient returns a Client speaking over conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{PluginClient: sdk.NewPluginClient(pb.NewPluginClient(conn)), c: pb.NewStoreClient(conn)}
}

func (c *Client) Get(ctx context.Context, key string) (*pb.KVPair, error) {
	kv, err := c.c.Get(ctx, &pb.KeyRequest{Key: key})
	return kv, sdk.FromStatus(err)
}

func (c *Client) Put(ctx context.Context, key string, value []byte) (*pb.KVPair, error) {
	kv, err := c.c.Put(ctx, &pb.PutRequest{Key: key, Value: value})
	return kv, sdk.FromStatus(err)
}

func (c *Client) AtomicPut(ctx context.Context, key string, value []byte, prevIndex uint64) (*pb.KVPair, error) {
	kv, err := c.c.AtomicPut(ctx, &pb.AtomicPutRequest{Key: key, Value: value, PreviousIndex: prevIndex})
	return kv, sdk.FromStatus(err)
}

func (c *Client) Delete(ctx context.Context, key string) error {
	_, err := c.c.Delete(ctx, &pb.KeyRequest{Key: key})
	return sdk.FromStatus(err)
}

func (c *Client) AtomicDelete(ctx context.Context, key string, prevIndex uint64) error {
	_, err := c.c.AtomicDelete(ctx, &pb.AtomicDeleteRequest{Key: key, PreviousIndex: prevIndex})
	return sdk.FromStatus(err)
}

func (c *Client) List(ctx context.Context, prefix string) ([]*pb.KVPair, error) {
	l, err := c.c.List(ctx, &pb.KeyRequest{Key: prefix})
	return l.GetPairs(), sdk.FromStatus(err)
}

func (c *Client) DeleteTree(ctx context.Context, prefix string) error {
	_, err := c.c.DeleteTree(ctx, &pb.KeyRequest{Key: prefix})
	return sdk.FromStatus(err)
}

func (c *Client) Txn(ctx context.Context, ops []*pb.TxnOp) ([]*pb.KVPair, error) {
	resp, err := c.c.Txn(ctx, &pb.TxnRequest{Ops: ops})
	return resp.GetResults(), sdk.FromStatus(err)
}

// Watch opens the stream and waits for its READY event, so when Watch
// returns the watch is established.
func (c *Client) Watch(ctx context.Context, prefix string) (<-chan *pb.WatchEvent, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.c.Watch(ctx, &pb.KeyRequest{Key: prefix})
	if err != nil {
		cancel()
		return nil, sdk.FromStatus(err)
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, sdk.FromStatus(err)
	}
	out := make(chan *pb.WatchEvent, 64)
	out <- first
	go func() {
		defer cancel()
		defer close(out)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (c *Client) Close(ctx context.Context) error {
	_, err := c.c.Close(ctx, &pb.Empty{})
	return sdk.FromStatus(err)
}

// LeaseGrant asks the plugin for a lease; a plugin built before leases
// answers sdk.ErrNotSupported.
func (c *Client) LeaseGrant(ctx context.Context, ttl time.Duration) (*pb.Lease, error) {
	l, err := c.c.LeaseGrant(ctx, &pb.LeaseGrantRequest{TtlMs: ttl.Milliseconds()})
	return l, sdk.FromStatus(err)
}

func (c *Client) LeaseRenew(ctx context.Context, id string) (*pb.Lease, error) {
	l, err := c.c.LeaseRenew(ctx, &pb.LeaseRequest{Id: id})
	return l, sdk.FromStatus(err)
}

func (c *Client) LeasePut(ctx context.Context, key string, value []byte, id string) (*pb.KVPair, error) {
	kv, err := c.c.LeasePut(ctx, &pb.LeasePutRequest{Key: key, Value: value, Lease: id})
	return kv, sdk.FromStatus(err)
}
