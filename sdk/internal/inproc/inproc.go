// Package inproc connects a gRPC client to a server in the same process
// through an in-memory listener, so plugin adapters can be tested without
// building plugin binaries.
package inproc

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// Dial starts a gRPC server whose services register registers, and returns
// a client connection to it and a function that stops both.
func Dial(register func(*grpc.Server) error) (*grpc.ClientConn, func(), error) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	if err := register(srv); err != nil {
		return nil, nil, err
	}
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///inproc",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		return nil, nil, fmt.Errorf("dialing in-process server: %w", err)
	}
	return conn, func() { conn.Close(); srv.Stop() }, nil
}
