package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/bootstrap"
)

// A real grpc-go xDS client (proxyless) against an in-process Server, and
// real gRPC backends: for behaviour only a real client proves (which
// listener it looks up, which address it calls).

// backendHeader carries the name of the backend that answered.
const backendHeader = "x-horizon-test-backend"

// testBackend is a gRPC health server that names itself in a header.
type testBackend struct {
	healthpb.UnimplementedHealthServer
	name string
	port int
}

func (b *testBackend) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := grpc.SetHeader(ctx, metadata.Pairs(backendHeader, b.name)); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// startBackend serves a testBackend on ip and a free port until the test
// ends.
func startBackend(t *testing.T, name, ip string) *testBackend {
	t.Helper()
	return startBackendOn(t, name, net.JoinHostPort(ip, "0"))
}

// startBackendOn serves a testBackend on addr (host:port) until the test
// ends.
func startBackendOn(t *testing.T, name, addr string) *testBackend {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s (Linux routes all of 127/8 to loopback): %v", addr, err)
	}
	b := &testBackend{name: name, port: lis.Addr().(*net.TCPAddr).Port}
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, b)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return b
}

// xdsServer is an in-process Server on a loopback port.
type xdsServer struct {
	srv  *Server
	addr *net.TCPAddr
}

// startXDSServer serves cs on a free loopback port until the test ends.
func startXDSServer(t *testing.T, cs *discovery.ClusterSet) *xdsServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := New(ctx, Options{Metrics: NewMetrics(prometheus.NewRegistry()), Logger: slog.New(slog.DiscardHandler)})
	if err := srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ForceServerCodecV2(Codec()))
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(func() { cancel(); g.Stop() })
	return &xdsServer{srv: srv, addr: lis.Addr().(*net.TCPAddr)}
}

// proxylessClient dials target (xds:///host:port) through grpc-go's xDS
// resolver, bootstrapped as `horizon bootstrap --role proxyless` would for
// a client in cluster.
func proxylessClient(t *testing.T, x *xdsServer, cluster, target string) healthpb.HealthClient {
	t.Helper()
	boot, err := bootstrap.GRPC(bootstrap.Proxy{ID: "client-" + cluster, Role: string(xds.Proxyless), Cluster: cluster, Namespace: "prod", ServiceAccount: "client"},
		bootstrap.Server{Host: "127.0.0.1", Port: uint32(x.addr.Port)}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatalf("grpc-go rejects the bootstrap: %v", err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// callBackend sends one RPC and returns the name of the backend that
// answered.
func callBackend(c healthpb.HealthClient, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var md metadata.MD
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md)); err != nil {
		return "", err
	}
	if v := md.Get(backendHeader); len(v) == 1 {
		return v[0], nil
	}
	return "", fmt.Errorf("no %s header", backendHeader)
}

// waitForBackend waits until an RPC is answered by the named backend.
func waitForBackend(t *testing.T, c healthpb.HealthClient, want, what string) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, what, func() error {
		got, err := callBackend(c, 2*time.Second)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("answered by %s, want %s", got, want)
		}
		return nil
	})
}
