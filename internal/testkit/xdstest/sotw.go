package xdstest

import (
	"context"
	"fmt"
	"testing"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// SotW is a state-of-the-world ADS stream.
type SotW struct {
	*Stream[discoverypb.DiscoveryRequest, discoverypb.DiscoveryResponse]
	acked map[string]string // type URL → the version last ACKed
}

// NewSotW opens a state-of-the-world ADS stream on conn.
func NewSotW(t testing.TB, conn grpc.ClientConnInterface) *SotW {
	ads := discoverypb.NewAggregatedDiscoveryServiceClient(conn)
	s := open(t, func(ctx context.Context) (grpc.BidiStreamingClient[discoverypb.DiscoveryRequest, discoverypb.DiscoveryResponse], error) {
		return ads.StreamAggregatedResources(ctx)
	}, func(r *discoverypb.DiscoveryResponse) string {
		return fmt.Sprintf("type %s version %s with %d resources", r.GetTypeUrl(), r.GetVersionInfo(), len(r.GetResources()))
	})
	return &SotW{Stream: s, acked: map[string]string{}}
}

// ACK accepts r, as Envoy does: its version and nonce, and the names the
// proxy subscribes to (none for a wildcard type).
func (c *SotW) ACK(r *discoverypb.DiscoveryResponse, names ...string) {
	c.t.Helper()
	c.acked[r.GetTypeUrl()] = r.GetVersionInfo()
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(), ResourceNames: names})
}

// NACK rejects r with message, as Envoy does: r's nonce with the version
// last accepted (through ACK; none before the first) and an error detail.
func (c *SotW) NACK(r *discoverypb.DiscoveryResponse, message string, names ...string) {
	c.t.Helper()
	c.Send(&discoverypb.DiscoveryRequest{
		TypeUrl: r.GetTypeUrl(), VersionInfo: c.acked[r.GetTypeUrl()], ResponseNonce: r.GetNonce(), ResourceNames: names,
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: message},
	})
}

// Fetch opens a state-of-the-world stream on conn, sends req and returns
// the first response, or the error that ended the stream: for tests of
// whether a server serves a proxy at all.
func Fetch(t testing.TB, conn grpc.ClientConnInterface, req *discoverypb.DiscoveryRequest) (*discoverypb.DiscoveryResponse, error) {
	c := NewSotW(t, conn)
	defer c.Close()
	if err := c.send(req); err != nil {
		return nil, err
	}
	return c.Next()
}
