package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
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

func gwTLSBackend(t *testing.T, id string, cert tls.Certificate) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
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

func gwCert(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// gwDial returns the id of the backend a TLS connection through the gateway
// reaches, verifying the backend's certificate.
func gwDial(addr, name string, pool *x509.CertPool) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: pool})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	id, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(id), err
}

func TestGatewayCommandEndToEnd(t *testing.T) {
	cert, pool := gwCert(t, adstest.SNIEcho)
	b1, b2 := gwTLSBackend(t, "b1", cert), gwTLSBackend(t, "b2", cert)

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
	gwEventually(t, "ready", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	if id, err := gwDial(listen, adstest.SNIEcho, pool); err != nil || id != "b1" {
		t.Fatalf("through the gateway: %q, %v", id, err)
	}
	if _, err := gwDial(listen, "unknown.example", pool); err == nil {
		t.Fatal("unknown SNI routed")
	}

	// Horizon moves the service: the next connections follow.
	if err := snapshots.SetSnapshot(ctx, nodeID, gwSnapshot(t, "v2", map[string][]string{adstest.SNIEcho: {b2}})); err != nil {
		t.Fatal(err)
	}
	gwEventually(t, "moved to b2", func() bool { id, _ := gwDial(listen, adstest.SNIEcho, pool); return id == "b2" })

	// The control plane goes away: the last table keeps routing.
	gs.Stop()
	if id, err := gwDial(listen, adstest.SNIEcho, pool); err != nil || id != "b2" {
		t.Fatalf("without the control plane: %q, %v", id, err)
	}
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

func gwEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s in 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
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
