package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/horizonmesh/horizon/gateway/proxy/ads/adstest"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// A go-control-plane ADS server in the test, serving the gateway contract;
// the real command connects to it and forwards TLS to real backends.

func gwSnapshot(t *testing.T, version string, routes map[string][]string) *cache.Snapshot {
	t.Helper()
	var chains []*listener.FilterChain
	var clusters, clas []types.Resource
	for name, addrs := range routes {
		chains = append(chains, adstest.TCPProxyChain(t, name, name))
		clusters = append(clusters, adstest.EDSCluster(name, ""))
		var eps []adstest.EP
		for _, a := range addrs {
			eps = append(eps, adstest.EP{Addr: a, Health: core.HealthStatus_HEALTHY})
		}
		clas = append(clas, adstest.CLA(name, eps...))
	}
	snap, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ListenerType: {adstest.Listener(t, "gateway-15443", chains...)},
		resource.ClusterType:  clusters,
		resource.EndpointType: clas,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatal(err)
	}
	return snap
}

func gwTLSBackend(t *testing.T, id string, srv certtest.Server) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "%s\n", id)
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return lis.Addr().String()
}

// gwDial returns the id of the backend a TLS connection through the gateway
// reaches, verifying the backend's certificate.
func gwDial(addr, name string, srv certtest.Server) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, srv.ClientConfig(name))
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	id, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(id), err
}

func TestGatewayCommandEndToEnd(t *testing.T) {
	srv := certtest.NewServer(t, "spiffe://cluster.local/ns/demo/sa/echo")
	b1, b2 := gwTLSBackend(t, "b1", srv), gwTLSBackend(t, "b2", srv)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snapshots := cache.NewSnapshotCache(true, cache.IDHash{}, nil)
	const nodeID = "gateway~east~test"
	if err := snapshots.SetSnapshot(ctx, nodeID, gwSnapshot(t, "v1", map[string][]string{adstest.SNIEcho: {b1}})); err != nil {
		t.Fatal(err)
	}
	xdsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, snapshots, nil))
	go gs.Serve(xdsLis)
	defer gs.Stop()

	listen, httpAddr := freeLoopbackAddr(t), freeLoopbackAddr(t)
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	gctx, stop := context.WithCancel(ctx)
	go func() {
		done <- gatewayCommand(gctx, []string{
			"--xds-address", xdsLis.Addr().String(), "--cluster", "east", "--id", nodeID,
			"--listen", listen, "--http-address", httpAddr, "--drain-timeout", "1s", "--log-level", "debug",
			"--max-connections-per-source", "2", "--hello-timeout", "1m",
		}, &stdout, &stderr)
	}()
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop")
		}
		if t.Failed() {
			t.Logf("gateway output:\n%s\n%s", stdout.String(), stderr.String())
		}
	}()

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testkit.Eventually(t, 10*time.Second, "the gateway ready", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	if id, err := gwDial(listen, adstest.SNIEcho, srv); err != nil || id != "b1" {
		t.Fatalf("through the gateway: %q, %v", id, err)
	}
	if _, err := gwDial(listen, "unknown.example", srv); err == nil {
		t.Fatal("unknown SNI routed")
	}

	// Horizon moves the service: the next connections follow.
	if err := snapshots.SetSnapshot(ctx, nodeID, gwSnapshot(t, "v2", map[string][]string{adstest.SNIEcho: {b2}})); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the service moved to b2", func() bool { id, _ := gwDial(listen, adstest.SNIEcho, srv); return id == "b2" })

	// The control plane goes away: the last table keeps routing.
	gs.Stop()
	if id, err := gwDial(listen, adstest.SNIEcho, srv); err != nil || id != "b2" {
		t.Fatalf("without the control plane: %q, %v", id, err)
	}
	// Three idle sockets from one address, two allowed: the third sheds the
	// first.
	for range 3 {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 5)}}
		c, err := d.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	testkit.Eventually(t, 10*time.Second, "--max-connections-per-source applied", func() bool {
		_, metrics := get("/metrics")
		return strings.Contains(metrics, `horizon_gateway_connections_total{result="shed_source_limit"} 1`)
	})
	_, metrics := get("/metrics")
	for _, want := range []string{
		`horizon_gateway_connections_total{result="routed"}`,
		`horizon_gateway_connections_total{result="unknown_sni"} 1`,
		`horizon_gateway_xds_responses_total{result="ack",type="lds"}`,
		`horizon_gateway_routes 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestGatewayCommandFlags(t *testing.T) {
	var out bytes.Buffer
	if err := gatewayCommand(context.Background(), nil, &out, &out); err == nil || !strings.Contains(err.Error(), "--cluster") {
		t.Errorf("no --cluster: %v", err)
	}
	if err := gatewayCommand(context.Background(), []string{"--cluster", "East_1"}, &out, &out); err == nil {
		t.Error("a cluster name that is not a DNS label was accepted")
	}
}
