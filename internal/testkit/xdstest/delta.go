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

// Delta is an incremental ADS stream.
type Delta struct {
	*Stream[discoverypb.DeltaDiscoveryRequest, discoverypb.DeltaDiscoveryResponse]
}

// NewDelta opens an incremental ADS stream on conn.
func NewDelta(t testing.TB, conn grpc.ClientConnInterface) *Delta {
	ads := discoverypb.NewAggregatedDiscoveryServiceClient(conn)
	s := open(t, func(ctx context.Context) (grpc.BidiStreamingClient[discoverypb.DeltaDiscoveryRequest, discoverypb.DeltaDiscoveryResponse], error) {
		return ads.DeltaAggregatedResources(ctx)
	}, func(r *discoverypb.DeltaDiscoveryResponse) string {
		return fmt.Sprintf("type %s with %d resources, removed %v", r.GetTypeUrl(), len(r.GetResources()), r.GetRemovedResources())
	})
	return &Delta{Stream: s}
}

// ACK accepts r: its type and nonce.
func (c *Delta) ACK(r *discoverypb.DeltaDiscoveryResponse) {
	c.t.Helper()
	c.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
}

// NACK rejects r with message: its type and nonce, and an error detail.
func (c *Delta) NACK(r *discoverypb.DeltaDiscoveryResponse, message string) {
	c.t.Helper()
	c.Send(&discoverypb.DeltaDiscoveryRequest{
		TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: message},
	})
}
