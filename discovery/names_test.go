package discovery

import (
	"strings"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
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

func TestNameValidators(t *testing.T) {
	label63, label64 := strings.Repeat("a", 63), strings.Repeat("a", 64)
	tests := []struct {
		s                       string
		label, name, key, value bool
	}{
		{s: "", value: true},
		{s: "a", label: true, name: true, key: true, value: true},
		{s: "echo-2", label: true, name: true, key: true, value: true},
		{s: "-a"},
		{s: "a-"},
		{s: "Echo", key: true, value: true}, // upper case: a label key or value, never a DNS name
		{s: label63, label: true, name: true, key: true, value: true},
		{s: label64},
		{s: "a.b", name: true, key: true, value: true},
		{s: "a..b", key: true, value: true}, // dots are name characters, not label separators, in keys and values
		{s: label64 + ".b", key: false},     // DNS holds every label to 63 bytes
		{s: "x_y", key: true, value: true},
		{s: "example.com/tier", key: true},
		{s: "example.com/Tier_1", key: true},
		{s: "Example.com/tier"},
		{s: label64 + ".com/tier"}, // IsQualifiedName allows this prefix; DNS does not
		{s: "/tier"},
		{s: "a/"},
		{s: "a/b/c"},
		{s: "a,b"},
		{s: "a=b"},
	}
	for _, tt := range tests {
		if got := IsDNSLabel(tt.s); got != tt.label {
			t.Errorf("IsDNSLabel(%q) = %v", tt.s, got)
		}
		if got := IsDNSName(tt.s); got != tt.name {
			t.Errorf("IsDNSName(%q) = %v", tt.s, got)
		}
		if got := IsLabelKey(tt.s); got != tt.key {
			t.Errorf("IsLabelKey(%q) = %v", tt.s, got)
		}
		if got := IsLabelValue(tt.s); got != tt.value {
			t.Errorf("IsLabelValue(%q) = %v", tt.s, got)
		}
	}
}

func TestXDSTypeName(t *testing.T) {
	for url, want := range map[string]string{
		resourcev3.ClusterType:                 "cds",
		resourcev3.EndpointType:                "eds",
		resourcev3.ListenerType:                "lds",
		resourcev3.RouteType:                   "rds",
		resourcev3.SecretType:                  "sds",
		resourcev3.RuntimeType:                 "other",
		"":                                     "other",
		"type.googleapis.com/made.up.v3.Thing": "other",
	} {
		if got := XDSTypeName(url); got != want {
			t.Errorf("XDSTypeName(%q) = %q, want %q", url, got, want)
		}
	}
}
