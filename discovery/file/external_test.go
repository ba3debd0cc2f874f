package file

import (
	"testing"
	"time"

	"github.com/horizonmesh/horizon/discovery"
)

// TestParseExternal reads external services with every resolution, filling
// the defaults (resolution from the endpoints, SNI from the host, health
// check interval, timeout and thresholds).
func TestParseExternal(t *testing.T) {
	cs := mustParse(t, "testdata/external/valid.yaml")
	var hosts []string
	for _, e := range cs.External {
		hosts = append(hosts, e.Host)
	}
	equal(t, "hosts", hosts, []string{"api.example.com", "geo.example.com", "payments.example.com"})

	pay, ok := cs.ExternalService("payments.example.com")
	if !ok {
		t.Fatal("no payments.example.com")
	}
	equal(t, "payments resolution", pay.Resolution, discovery.ResolveStrictDNS)
	equal(t, "payments address", pay.Address, "240.0.0.10")
	equal(t, "payments endpoints", pay.Endpoints, []discovery.ExternalEndpoint{
		{Address: "pay-a.example.net", Port: 8443}, {Address: "pay-b.example.net"}})
	equal(t, "payments TLS", *pay.TLS, discovery.ExternalTLS{SNI: "payments.example.com", CAFile: "/etc/ssl/certs/ca-certificates.crt"})
	equal(t, "payments health check", *pay.HealthCheck, discovery.HealthCheck{Protocol: "http", Path: "/healthz",
		Interval: 5 * time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 2})
	equal(t, "payments networks", pay.Networks, []string{"east"})
	equal(t, "payments reachable from west", pay.ReachableFrom("west"), false)
	equal(t, "payments DNS names", pay.DNSNames(), []string{"pay-a.example.net", "pay-b.example.net"})

	geo, _ := cs.ExternalService("geo.example.com")
	equal(t, "geo resolution", geo.Resolution, discovery.ResolveStatic)
	equal(t, "geo endpoints", geo.Endpoints, []discovery.ExternalEndpoint{{Address: "192.0.2.10"}, {Address: "192.0.2.20"}})
	equal(t, "geo health check", *geo.HealthCheck, discovery.HealthCheck{Protocol: "tcp",
		Interval: 10 * time.Second, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3})
	equal(t, "geo reachable from west", geo.ReachableFrom("west"), true)

	api, _ := cs.ExternalService("api.example.com")
	equal(t, "api resolution", api.Resolution, discovery.ResolveLogicalDNS)

	// The version covers the external services, and resolved addresses.
	plain := mustParse(t, "testdata/valid/minimal.yaml")
	if cs.Version() == plain.Version() {
		t.Error("external services do not change the version")
	}
	r1 := cs.WithResolved(map[string][]string{"api.example.net": {"192.0.2.7"}}, nil)
	r2 := cs.WithResolved(map[string][]string{"api.example.net": {"192.0.2.8"}}, nil)
	if r1.Version() == r2.Version() || r1.Version() == cs.Version() {
		t.Error("resolved addresses do not change the version")
	}
	if r1.Version() != cs.WithResolved(map[string][]string{"api.example.net": {"192.0.2.7"}}, nil).Version() {
		t.Error("the same answers give another version")
	}
	api1, _ := r1.ExternalService("api.example.com")
	equal(t, "api resolved", api1.Resolved, map[string][]string{"api.example.net": {"192.0.2.7"}})
	if api.Resolved != nil {
		t.Error("WithResolved modified the ClusterSet it was called on")
	}
}

// TestSeedExamples: the examples that restate seed 003's ServiceEntries
// parse.
func TestSeedExamples(t *testing.T) {
	cs := mustParse(t, "../../examples/seed003/external-and-aliases.yaml")
	if _, ok := cs.ExternalService("api.external.com"); !ok {
		t.Error("no api.external.com")
	}
	if host, ok := cs.AliasHost("users.api.example.com", "remote"); !ok || host != "user-service.production.svc.clusterset.local" {
		t.Errorf("users.api.example.com stands for %q", host)
	}
}
