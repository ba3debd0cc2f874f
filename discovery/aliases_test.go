package discovery

import (
	"strings"
	"testing"
)

// TestNewRefusesAliasClaimedTwice: sources other than the file (Kubernetes
// annotations) meet New's check only; two services claiming one alias, or
// a bad alias, fail New with both claims named.
func TestNewRefusesAliasClaimedTwice(t *testing.T) {
	svc := func(name string, aliases ...string) Service {
		return Service{Namespace: "prod", Name: name, Ports: []Port{{Port: 80}}, Aliases: aliases}
	}
	for _, tc := range []struct {
		name     string
		clusters []Cluster
		want     string
	}{
		{"two services", []Cluster{
			{Name: "east-1", Network: "east", Services: []Service{svc("users", "users.global")}},
			{Name: "west-1", Network: "west", Services: []Service{svc("orders", "users.global")}},
		}, `alias "users.global": claimed by service prod/users (cluster east-1) and by service prod/orders (cluster west-1)`},
		{"service domain", []Cluster{
			{Name: "east-1", Network: "east", Services: []Service{svc("users", "orders.prod.svc.cluster.local")}},
		}, `is in a service domain`},
		{"listed twice", []Cluster{
			{Name: "east-1", Network: "east", Services: []Service{svc("users", "a.global", "a.global")}},
		}, `alias "a.global": listed twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.clusters)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// One service may list an alias in every cluster that defines it.
	cs, err := New([]Cluster{
		{Name: "east-1", Network: "east", Services: []Service{svc("users", "users.global")}},
		{Name: "west-1", Network: "west", Services: []Service{svc("users", "users.global")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := cs.AliasOf("users.global"); !ok || k.Name != "users" {
		t.Fatalf("AliasOf = %v, %v", k, ok)
	}
}

// TestAliasesChangeTheVersion: adding an alias changes the ClusterSet's
// version and the service's digest, so views are rendered again.
func TestAliasesChangeTheVersion(t *testing.T) {
	mk := func(aliases ...string) *ClusterSet {
		cs, err := New([]Cluster{{Name: "east-1", Network: "east", Services: []Service{
			{Namespace: "prod", Name: "users", Ports: []Port{{Port: 80}}, Aliases: aliases}}}})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	a, b := mk(), mk("users.global")
	if a.Version() == b.Version() {
		t.Fatal("an alias does not change the version")
	}
	k := ServiceKey{Namespace: "prod", Name: "users"}
	da, _ := a.ServiceDigest("east-1", k)
	db, _ := b.ServiceDigest("east-1", k)
	if da == db {
		t.Fatal("an alias does not change the service digest")
	}
}

// TestWithoutGatewaysKeepsAliasesAndExternal: withdrawing a gateway (gateway
// health) keeps the ClusterSet's aliases and external services, and its
// version still covers the external services.
func TestWithoutGatewaysKeepsAliasesAndExternal(t *testing.T) {
	cs, err := New([]Cluster{
		{Name: "east-1", Network: "east", Gateways: []Gateway{{Address: "192.0.2.1", Port: 15443}},
			Services: []Service{{Namespace: "prod", Name: "users", Ports: []Port{{Port: 80}}, Aliases: []string{"users.global"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ext := func(addr string) []ExternalService {
		return []ExternalService{{Host: "api.example.com", Ports: []Port{{Port: 443}}, Resolution: ResolveStatic,
			Endpoints: []ExternalEndpoint{{Address: addr}}}}
	}
	a, err := cs.WithExternal(ext("192.0.2.10"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cs.WithExternal(ext("192.0.2.11"))
	if err != nil {
		t.Fatal(err)
	}
	all := func(Gateway) bool { return true }
	wa, wb := a.WithoutGateways(all), b.WithoutGateways(all)
	if _, ok := wa.AliasOf("users.global"); !ok {
		t.Error("alias lost")
	}
	if len(wa.External) != 1 {
		t.Errorf("external services %v", wa.External)
	}
	if wa.Version() == wb.Version() {
		t.Error("versions equal for different external services")
	}
}

// TestWithExternalRefusesTakenAddress: an external service's address that
// a service holds as its cluster IP, or another external service holds, is
// refused, as is a host that is an alias.
func TestWithExternalRefusesTakenAddress(t *testing.T) {
	cs, err := New([]Cluster{{Name: "east-1", Network: "east", Services: []Service{
		{Namespace: "prod", Name: "users", ClusterIP: "10.96.0.1", Ports: []Port{{Port: 80}}, Aliases: []string{"users.global"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	ext := func(host, addr string) ExternalService {
		return ExternalService{Host: host, Address: addr, Ports: []Port{{Port: 443}}, Resolution: ResolveStatic,
			Endpoints: []ExternalEndpoint{{Address: "192.0.2.1"}}}
	}
	for _, tc := range []struct {
		ext  []ExternalService
		want string
	}{
		{[]ExternalService{ext("a.example.com", "10.96.0.1")}, "address 10.96.0.1 is service prod/users (cluster east-1)'s already"},
		{[]ExternalService{ext("a.example.com", "240.0.0.1"), ext("b.example.com", "240.0.0.1")}, "address 240.0.0.1 is external service a.example.com's already"},
		{[]ExternalService{ext("users.global", "")}, "the name is an alias of service prod/users"},
	} {
		if _, err := cs.WithExternal(tc.ext); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("WithExternal: %v, want an error containing %q", err, tc.want)
		}
	}
}

// TestExportCarriesNonExportingClustersAliases: an alias listed only by a
// cluster that defines the service without exporting it still stands for
// the clusterset.local host (the service is exported elsewhere), so the
// export carries it and views render it.
func TestExportCarriesNonExportingClustersAliases(t *testing.T) {
	cs, err := New([]Cluster{
		{Name: "east-1", Network: "east", Services: []Service{{Namespace: "prod", Name: "users", Exported: true, Ports: []Port{{Port: 80}}}}},
		{Name: "west-1", Network: "west", Services: []Service{{Namespace: "prod", Name: "users", Ports: []Port{{Port: 80}}, Aliases: []string{"users.global"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ex, _ := cs.Export(ServiceKey{Namespace: "prod", Name: "users"})
	if len(ex.Aliases) != 1 || ex.Aliases[0] != "users.global" {
		t.Fatalf("export aliases %v", ex.Aliases)
	}
	if host, ok := cs.AliasHost("users.global", "east-1"); !ok || host != "users.prod.svc.clusterset.local" {
		t.Fatalf("AliasHost = %q, %v", host, ok)
	}
}
