package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/resolve"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/dnsserver"
	"github.com/horizonmesh/horizon/xds"
)

// TestProxylessFollowsExternalDNS: a real grpc-go xDS client calls an
// external service known by a DNS name. grpc-go cannot resolve a
// STRICT_DNS cluster itself, so Horizon's resolver (discovery/resolve)
// asks a real DNS server in the test and the views serve the answer as EDS
// endpoints: when the record moves from 127.0.0.2 to 127.0.0.3, the calls
// follow; when the DNS server fails, the last good address keeps serving.
// The view's notes say what the proxyless client does not get.
func TestProxylessFollowsExternalDNS(t *testing.T) {
	// Two backends on one port, on two loopback addresses.
	a := startBackend(t, "a", "127.0.0.2")
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.3:%d", a.port))
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.3:%d: %v", a.port, err)
	}
	lis.Close()
	b := startBackendOn(t, "b", lis.Addr().String())

	dns := dnsserver.Start(t)
	dns.Set("pay.example.test", "127.0.0.2")
	tmpl, err := os.ReadFile("testdata/external/clusterset.yaml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := file.Parse("clusterset.yaml", fmt.Appendf(nil, string(tmpl), a.port))
	if err != nil {
		t.Fatal(err)
	}
	x := startXDSServer(t, cs)
	r := resolve.New(resolve.Options{Lookup: dns.Resolver(), Interval: 100 * time.Millisecond, Timeout: time.Second,
		Out: func(cs *discovery.ClusterSet) {
			if err := x.srv.Apply(cs); err != nil {
				t.Errorf("apply: %v", err)
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	r.In(cs)

	c := proxylessClient(t, x, "east-1", "xds:///payments.example.com:7070")
	waitForBackend(t, c, "a", "an RPC to payments.example.com answered by 127.0.0.2")

	dns.Set("pay.example.test", "127.0.0.3")
	waitForBackend(t, c, b.name, "RPCs following the DNS answer to 127.0.0.3")

	dns.Fail("pay.example.test")
	testkit.Eventually(t, 10*time.Second, "the failure in the view's notes", func() error {
		res, err := xds.Render(currentClusterSet(x), xds.Group{Role: xds.Proxyless, Cluster: "east-1", Network: "east"}, xds.Policy{})
		if err != nil {
			return err
		}
		for _, n := range res.Notes {
			if strings.Contains(n, "resolving pay.example.test failed") {
				return nil
			}
		}
		return fmt.Errorf("notes %q", res.Notes)
	})
	for range 5 {
		if got, err := callBackend(c, 5*time.Second); err != nil || got != b.name {
			t.Fatalf("with DNS failing: answered by %q (%v), want the last good address's backend %s", got, err, b.name)
		}
	}
}

// currentClusterSet is the ClusterSet the server last applied.
func currentClusterSet(x *xdsServer) *discovery.ClusterSet {
	x.srv.mu.Lock()
	defer x.srv.mu.Unlock()
	return x.srv.current
}
