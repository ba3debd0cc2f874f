package xds

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/horizonmesh/horizon/discovery"
)

// bigClusterSet has enough services that a sidecar's CDS is about a
// megabyte; generation varies one endpoint so each call is new content.
func bigClusterSet(t *testing.T, generation int) *discovery.ClusterSet {
	t.Helper()
	c := discovery.Cluster{Name: "east-1", Network: "east"}
	for i := range 1500 {
		c.Services = append(c.Services, discovery.Service{
			Namespace: "demo", Name: fmt.Sprintf("svc-%04d", i), Exported: true,
			Ports:     []discovery.Port{{Name: "http", Port: 8080, Protocol: "TCP", AppProtocol: "http"}},
			Endpoints: []discovery.Endpoint{{Address: fmt.Sprintf("10.%d.%d.%d", generation%200, i/250, i%250+1), Ready: true, MTLS: true, ServiceAccount: "sa"}},
		})
	}
	cs, err := discovery.New([]discovery.Cluster{c})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestSendTimeoutClosesStuckStream: a proxy that stops reading is cut off
// after the send timeout instead of holding its stream forever.
func TestSendTimeoutClosesStuckStream(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := NewMetrics(prometheus.NewRegistry())
	srv := NewServer(ctx, Options{Metrics: m})
	if err := srv.Apply(bigClusterSet(t, 0)); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.StreamInterceptor(SendTimeout(300*time.Millisecond, m)))
	srv.Register(g)
	go g.Serve(lis)
	defer g.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	stream, err := discoverypb.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	// Subscribe to two types, then never read. The first response (a
	// megabyte of CDS) is queued; the second waits behind it for flow
	// control that never comes, and with it the whole stream's loop.
	for _, typeURL := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if err := stream.Send(&discoverypb.DiscoveryRequest{Node: node("stuck", "east-1"), TypeUrl: typeURL}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for gen := 1; testutil.ToFloat64(m.rejected.WithLabelValues("send_timeout")) == 0; gen++ {
		if time.Now().After(deadline) {
			t.Fatal("a proxy that does not read was never cut off")
		}
		if err := srv.Apply(bigClusterSet(t, gen)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The stream is gone from the server's books.
	for len(srv.Syncz()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the cut-off stream is still tracked: %+v", srv.Syncz())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
