package server

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/discovery/file"
)

// TestProxylessDialsAlias: a real grpc-go xDS client dials a service by
// each of its aliases (a global name and an arbitrary one) and by its own
// host, and reaches its backend every time; a name no service claims gets
// no listener, and the RPC fails. grpc-go looks up the listener named by
// the dial target's host:port, so without a listener per alias the calls
// by alias fail.
func TestProxylessDialsAlias(t *testing.T) {
	backend := startBackend(t, "users", "127.0.0.1")
	tmpl, err := os.ReadFile("testdata/aliases/clusterset.yaml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := file.Parse("clusterset.yaml", fmt.Appendf(nil, string(tmpl), backend.port))
	if err != nil {
		t.Fatal(err)
	}
	x := startXDSServer(t, cs)
	for _, target := range []string{
		"xds:///users.api.example.com:7070",
		"xds:///user-service.production.global:7070",
		"xds:///users.prod.svc.clusterset.local:7070",
	} {
		c := proxylessClient(t, x, "east-1", target)
		waitForBackend(t, c, "users", "an RPC to "+target)
	}
	c := proxylessClient(t, x, "east-1", "xds:///orders.api.example.com:7070")
	if got, err := callBackend(c, 5*time.Second); err == nil {
		t.Fatalf("an RPC to an alias nobody claims was answered by %s", got)
	}
}
