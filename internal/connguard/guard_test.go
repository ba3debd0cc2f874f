package connguard

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/xds/server"
)

// TestComposesWithXDSServerOptions serves with the xDS servers' own options
// first (server.GRPCOptions: their codec, send timeout interceptor and
// keepalives), as horizon serve does: streams still work, and the Guard's
// interceptors still run after the send timeout's.
func TestComposesWithXDSServerOptions(t *testing.T) {
	srv := startServer(t, Config{Limits: Limits{MaxFirstMsgSize: 1 << 10}}, server.GRPCOptions(time.Second, nil)...)
	client := srv.client(t, nil)
	stream, err := client.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, stream)
	_, err = client.UnaryCall(context.Background(), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 2<<10)}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a large first message: %v, want ResourceExhausted", err)
	}
}

// TestLimitDefaults: a zero Limits is DefaultLimits, and a field set keeps
// its value.
func TestLimitDefaults(t *testing.T) {
	if got := (Limits{}).withDefaults(); got != DefaultLimits() {
		t.Errorf("zero Limits gave %+v, want DefaultLimits %+v", got, DefaultLimits())
	}
	l := DefaultLimits()
	l.MaxConns, l.StreamRate, l.LingerTimeout = 7, 0.5, time.Millisecond
	if got := l.withDefaults(); got != l {
		t.Errorf("set fields changed: %+v, want %+v", got, l)
	}
	if g := New(Config{Port: "x"}); g.Limits() != DefaultLimits() {
		t.Errorf("New's limits %+v", g.Limits())
	}
}
