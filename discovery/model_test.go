package discovery

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func svc(name string, exported bool, at time.Time, ports ...Port) Service {
	return Service{Namespace: "demo", Name: name, Exported: exported, ExportedAt: at, Ports: ports}
}

func TestMergeExports(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	http := Port{Name: "http", Port: 80, Protocol: "TCP"}
	web := Port{Name: "web", Port: 80, Protocol: "TCP"} // same port, another name: a conflict
	grpc := Port{Name: "grpc", Port: 7070, Protocol: "TCP"}
	dnsTCP := Port{Name: "dns-tcp", Port: 53, Protocol: "TCP"}
	dnsUDP := Port{Name: "dns", Port: 53, Protocol: "UDP"} // one number, two protocols: no conflict
	cs, err := New([]Cluster{
		{Name: "west", Network: "w", Services: []Service{svc("echo", true, t0.Add(time.Hour), web, grpc, dnsUDP), svc("hidden", false, t0, http)}},
		{Name: "east", Network: "e", Services: []Service{svc("echo", true, t0, http, dnsTCP)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cs.Export(ServiceKey{"demo", "hidden"}); ok {
		t.Error("an unexported service is in the ClusterSet view")
	}
	ex, ok := cs.Export(ServiceKey{"demo", "echo"})
	if !ok {
		t.Fatal("echo is not exported")
	}
	if !slices.Equal(ex.Clusters, []string{"east", "west"}) {
		t.Errorf("exporting clusters %v", ex.Clusters)
	}
	// The oldest export (east) wins port 80; west adds 7070 and 53/UDP.
	if want := []Port{dnsTCP, dnsUDP, http, grpc}; !slices.Equal(ex.Ports, want) {
		t.Errorf("merged ports %+v, want %+v", ex.Ports, want)
	}
	if len(ex.Conflicts) != 1 || ex.Conflicts[0].Cluster != "west" || ex.Conflicts[0].Reason != PortConflict ||
		!strings.Contains(ex.Conflicts[0].Message, "port 80/TCP") {
		t.Errorf("conflicts %+v, want west's port 80 as a PortConflict", ex.Conflicts)
	}
	c, _ := cs.Cluster("west")
	s, _ := c.Service(ServiceKey{"demo", "echo"})
	if p, ok := s.Port(53); ok {
		t.Errorf("Port(53) found %+v: it is UDP only in west", p)
	}
	if p, ok := s.PortFor(53, "UDP"); !ok || p != dnsUDP {
		t.Errorf("PortFor(53, UDP) = %+v, %v", p, ok)
	}
}

func TestNewRejects(t *testing.T) {
	ep := func(addr string) Endpoint { return Endpoint{Address: addr, Ready: true} }
	tests := []struct {
		name     string
		clusters []Cluster
		want     string
	}{
		{"duplicate cluster", []Cluster{{Name: "a", Network: "n"}, {Name: "a", Network: "n"}}, `cluster "a": defined twice`},
		{"no network", []Cluster{{Name: "a"}}, "empty network"},
		{"bad address", []Cluster{{Name: "a", Network: "n", Services: []Service{{Namespace: "d", Name: "s", Endpoints: []Endpoint{ep("300.1.1.1")}}}}}, "not an IP address"},
		{"duplicate endpoint", []Cluster{{Name: "a", Network: "n", Services: []Service{{Namespace: "d", Name: "s", Endpoints: []Endpoint{ep("10.0.0.1"), ep("10.0.0.1")}}}}}, "listed twice"},
		{"port 0", []Cluster{{Name: "a", Network: "n", Services: []Service{{Namespace: "d", Name: "s", Ports: []Port{{Port: 0}}}}}}, "out of range"},
		{"bad gateway", []Cluster{{Name: "a", Network: "n", Gateways: []Gateway{{Address: "10.0.0.1"}}}}, "gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.clusters)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestVersionIsContent(t *testing.T) {
	mk := func(ready bool) *ClusterSet {
		cs, err := New([]Cluster{
			{Name: "b", Network: "n"},
			{Name: "a", Network: "n", Services: []Service{{Namespace: "d", Name: "s", Endpoints: []Endpoint{{Address: "10.0.0.2", Ready: ready}, {Address: "10.0.0.1", Ready: true}}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	a, b, c := mk(true), mk(true), mk(false)
	if a.Version() != b.Version() {
		t.Error("equal ClusterSets have different versions")
	}
	if a.Version() == c.Version() {
		t.Error("a readiness change did not change the version")
	}
	if a.Clusters[0].Name != "a" || a.Clusters[0].Services[0].Endpoints[0].Address != "10.0.0.1" {
		t.Error("clusters and endpoints are not sorted")
	}
}

func TestGatewaysFor(t *testing.T) {
	pub1, pub2 := Gateway{Address: "203.0.113.1", Port: 15443}, Gateway{Address: "203.0.113.2", Port: 15443}
	west := Gateway{Address: "10.0.0.1", Port: 15443, ForNetwork: "west"}
	north := Gateway{Address: "10.0.0.2", Port: 15443, ForNetwork: "north"}
	c := Cluster{Network: "east", Gateways: []Gateway{west, north, pub1, pub2}}
	for _, tt := range []struct {
		network string
		want    []Gateway
	}{
		{"west", []Gateway{west}},
		{"north", []Gateway{north}},
		{"south", []Gateway{pub1, pub2}},
	} {
		if got := c.GatewaysFor(tt.network); !slices.Equal(got, tt.want) {
			t.Errorf("GatewaysFor(%s) = %v, want %v", tt.network, got, tt.want)
		}
	}
	// Only peer addresses: a network not named gets none.
	only := Cluster{Network: "east", Gateways: []Gateway{west}}
	if got := only.GatewaysFor("south"); len(got) != 0 {
		t.Errorf("GatewaysFor(south) = %v, want none", got)
	}
	// An address advertised to the cluster's own network is refused.
	if _, err := New([]Cluster{{Name: "e", Network: "east", Gateways: []Gateway{{Address: "10.0.0.1", Port: 1, ForNetwork: "east"}}}}); err == nil {
		t.Error("New accepted a gateway advertised to its own network")
	}
}

func TestLocalityCompare(t *testing.T) {
	// Sorted: region first, then zone, then sub-zone; empty sorts first.
	sorted := []Locality{
		{},
		{Region: "eu"},
		{Region: "eu", Zone: "eu-1a"},
		{Region: "eu", Zone: "eu-1a", SubZone: "rack1"},
		{Region: "eu", Zone: "eu-1b"},
		{Region: "us", Zone: "eu-1a"},
	}
	for i, a := range sorted {
		for j, b := range sorted {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", a, b, got, want)
			}
		}
	}
}
