package discovery

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestNames(t *testing.T) {
	echo := ServiceKey{Namespace: "demo", Name: "echo"}
	tests := []struct {
		scope   Scope
		port    uint32
		host    string
		cluster string
	}{
		{ClusterLocal, 8080, "echo.demo.svc.cluster.local", "outbound_.8080_._.echo.demo.svc.cluster.local"},
		{ClusterSetWide, 7070, "echo.demo.svc.clusterset.local", "outbound_.7070_._.echo.demo.svc.clusterset.local"},
	}
	for _, tt := range tests {
		host := Host(echo, tt.scope)
		if host != tt.host {
			t.Errorf("Host = %q, want %q", host, tt.host)
		}
		name := ClusterName(host, tt.port)
		if name != tt.cluster || SNI(host, tt.port) != name {
			t.Errorf("ClusterName = %q, want %q (and SNI equal to it)", name, tt.cluster)
		}
		h, p, err := ParseClusterName(name)
		if err != nil || h != host || p != tt.port {
			t.Errorf("ParseClusterName(%q) = %q, %d, %v", name, h, p, err)
		}
		k, s, err := ParseHost(host)
		if err != nil || k != echo || s != tt.scope {
			t.Errorf("ParseHost(%q) = %v, %v, %v", host, k, s, err)
		}
	}
	for _, bad := range []string{"", "inbound_.80_._.x", "outbound_.0_._.x", "outbound_.99999_._.x", "outbound_.80_._.", "outbound_.http_._.x"} {
		if _, _, err := ParseClusterName(bad); err == nil {
			t.Errorf("ParseClusterName(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"echo", "echo.demo.svc.example.com", "echo.a.b.svc.cluster.local", ".demo.svc.cluster.local"} {
		if _, _, err := ParseHost(bad); err == nil {
			t.Errorf("ParseHost(%q) accepted", bad)
		}
	}
	id, err := WorkloadID(spiffeid.RequireTrustDomainFromString("example.org"), "demo", "echo")
	if err != nil || id.String() != "spiffe://example.org/ns/demo/sa/echo" {
		t.Errorf("WorkloadID = %v, %v", id, err)
	}
	if _, err := WorkloadID(spiffeid.RequireTrustDomainFromString("example.org"), "demo", "a/b"); err == nil {
		t.Error("WorkloadID accepted a service account with a slash")
	}
}
