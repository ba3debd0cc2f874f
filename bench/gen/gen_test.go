package gen

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/discovery"
)

func mustGenerate(t *testing.T, s Spec) *discovery.ClusterSet {
	t.Helper()
	cs, err := Generate(s)
	if err != nil {
		t.Fatalf("Generate(%+v): %v", s, err)
	}
	return cs
}

func TestDeterministic(t *testing.T) {
	s := Spec{Networks: 3, ClustersPerNetwork: 2, Services: 7, EndpointsPerService: 13, GatewaysPerCluster: 2, PortsPerService: 3, Namespaces: 2}
	a, b := mustGenerate(t, s), mustGenerate(t, s)
	if a.Version() == "" || a.Version() != b.Version() {
		t.Fatalf("versions differ for one spec: %q vs %q", a.Version(), b.Version())
	}
	// Every field of the spec shows in the version.
	for _, other := range []Spec{
		{Networks: 4, ClustersPerNetwork: 2, Services: 7, EndpointsPerService: 13, GatewaysPerCluster: 2, PortsPerService: 3, Namespaces: 2},
		{Networks: 3, ClustersPerNetwork: 1, Services: 7, EndpointsPerService: 13, GatewaysPerCluster: 2, PortsPerService: 3, Namespaces: 2},
		{Networks: 3, ClustersPerNetwork: 2, Services: 8, EndpointsPerService: 13, GatewaysPerCluster: 2, PortsPerService: 3, Namespaces: 2},
		{Networks: 3, ClustersPerNetwork: 2, Services: 7, EndpointsPerService: 12, GatewaysPerCluster: 2, PortsPerService: 3, Namespaces: 2},
		{Networks: 3, ClustersPerNetwork: 2, Services: 7, EndpointsPerService: 13, GatewaysPerCluster: 1, PortsPerService: 3, Namespaces: 2},
		{Networks: 3, ClustersPerNetwork: 2, Services: 7, EndpointsPerService: 13, GatewaysPerCluster: 2, PortsPerService: 2, Namespaces: 2},
		{Networks: 3, ClustersPerNetwork: 2, Services: 7, EndpointsPerService: 13, GatewaysPerCluster: 2, PortsPerService: 3, Namespaces: 1},
	} {
		if v := mustGenerate(t, other).Version(); v == a.Version() {
			t.Errorf("spec %+v has the version of %+v", other, s)
		}
	}
}

func TestDefaults(t *testing.T) {
	a := mustGenerate(t, Spec{Networks: 2, ClustersPerNetwork: 1, Services: 2, EndpointsPerService: 4, GatewaysPerCluster: 1})
	b := mustGenerate(t, Spec{Networks: 2, ClustersPerNetwork: 1, Services: 2, EndpointsPerService: 4, GatewaysPerCluster: 1, PortsPerService: 1, Namespaces: 1})
	if a.Version() != b.Version() {
		t.Errorf("zero PortsPerService/Namespaces should mean 1")
	}
}

func TestCounts(t *testing.T) {
	for _, s := range []Spec{
		{Networks: 4, ClustersPerNetwork: 1, Services: 1, EndpointsPerService: 1000, GatewaysPerCluster: 2},
		{Networks: 4, ClustersPerNetwork: 1, Services: 10, EndpointsPerService: 100, GatewaysPerCluster: 2},
		{Networks: 4, ClustersPerNetwork: 1, Services: 100, EndpointsPerService: 10, GatewaysPerCluster: 2},
		{Networks: 4, ClustersPerNetwork: 1, Services: 100, EndpointsPerService: 1, GatewaysPerCluster: 2},
		{Networks: 3, ClustersPerNetwork: 3, Services: 5, EndpointsPerService: 7, GatewaysPerCluster: 3, PortsPerService: 4, Namespaces: 3},
		{Networks: 1, ClustersPerNetwork: 1, Services: 0, EndpointsPerService: 5, GatewaysPerCluster: 0},
	} {
		t.Run("", func(t *testing.T) { checkCounts(t, s) })
	}
}

func checkCounts(t *testing.T, s Spec) {
	cs := mustGenerate(t, s)
	want := s.Counts()
	if got := len(cs.Clusters); got != want.Clusters {
		t.Fatalf("%d clusters, want %d", got, want.Clusters)
	}
	if got := len(cs.Networks()); got != s.Networks {
		t.Errorf("%d networks, want %d", got, s.Networks)
	}
	if got := len(cs.Exports); got != s.Services {
		t.Errorf("%d exports, want %d", got, s.Services)
	}
	for _, ex := range cs.Exports {
		if len(ex.Clusters) != want.Clusters {
			t.Errorf("export %s: from %d clusters, want every one (%d)", ex.Key, len(ex.Clusters), want.Clusters)
		}
		if len(ex.Conflicts) != 0 {
			t.Errorf("export %s: conflicts %q", ex.Key, ex.Conflicts)
		}
		if len(ex.Ports) != max(s.PortsPerService, 1) {
			t.Errorf("export %s: %d ports, want %d", ex.Key, len(ex.Ports), max(s.PortsPerService, 1))
		}
	}
	seen := map[string]string{}
	unique := func(addr, what string) {
		t.Helper()
		if prev, dup := seen[addr]; dup {
			t.Errorf("address %s used by %s and %s", addr, prev, what)
		}
		seen[addr] = what
		a, err := netip.ParseAddr(addr)
		if err != nil || !a.Is4() || !a.IsPrivate() {
			t.Errorf("%s: address %q is not a private IPv4 address", what, addr)
		}
	}
	var gateways, services, endpoints int
	perService := map[discovery.ServiceKey][]int{} // endpoints per cluster
	for ci, c := range cs.Clusters {
		if !strings.HasPrefix(c.Name, "n") || c.Network == "" {
			t.Errorf("cluster %+v: bad name or network", c)
		}
		gateways += len(c.Gateways)
		if len(c.Gateways) != s.GatewaysPerCluster {
			t.Errorf("cluster %s: %d gateways, want %d", c.Name, len(c.Gateways), s.GatewaysPerCluster)
		}
		for _, g := range c.Gateways {
			unique(g.Address, "gateway of "+c.Name)
			if g.Port != GatewayPort {
				t.Errorf("gateway %s: port %d", g, g.Port)
			}
		}
		services += len(c.Services)
		for _, svc := range c.Services {
			if !svc.Exported {
				t.Errorf("%s/%s: not exported", c.Name, svc.Key())
			}
			counts := perService[svc.Key()]
			if counts == nil {
				counts = make([]int, len(cs.Clusters))
				perService[svc.Key()] = counts
			}
			counts[ci] = len(svc.Endpoints)
			endpoints += len(svc.Endpoints)
			zones := map[string]int{}
			for _, e := range svc.Endpoints {
				unique(e.Address, c.Name+"/"+svc.Key().String())
				if !e.Ready || !e.MTLS || !e.Usable() {
					t.Errorf("endpoint %s: want ready and mTLS", e.Address)
				}
				if e.Locality.Region != c.Locality.Region {
					t.Errorf("endpoint %s: region %s, cluster %s is in %s", e.Address, e.Locality.Region, c.Name, c.Locality.Region)
				}
				zones[e.Locality.Zone]++
			}
			if len(zones) > 2 {
				t.Errorf("%s/%s: endpoints in %d zones, want at most 2", c.Name, svc.Key(), len(zones))
			}
			if len(zones) == 2 && spreadOf(zones) > 1 {
				t.Errorf("%s/%s: zones unbalanced: %v", c.Name, svc.Key(), zones)
			}
		}
	}
	if gateways != want.Gateways || services != want.Services || endpoints != want.Endpoints {
		t.Errorf("got %d gateways, %d services, %d endpoints; want %+v", gateways, services, endpoints, want)
	}
	// Every service's endpoints are spread evenly over the clusters.
	total := make([]int, len(cs.Clusters))
	for k, counts := range perService {
		m := map[int]int{}
		for i, n := range counts {
			m[i] = n
			total[i] += n
		}
		if spreadOf(m) > 1 {
			t.Errorf("%s: endpoints per cluster %v, want even", k, counts)
		}
	}
	// ... and so is the whole ClusterSet's.
	m := map[int]int{}
	for i, n := range total {
		m[i] = n
	}
	if spreadOf(m) > 1 {
		t.Errorf("endpoints per cluster %v, want even", total)
	}
}

func spreadOf[K comparable](m map[K]int) int {
	lo, hi, first := 0, 0, true
	for _, n := range m {
		if first || n < lo {
			lo = n
		}
		if first || n > hi {
			hi = n
		}
		first = false
	}
	return hi - lo
}

func TestInvalid(t *testing.T) {
	for _, s := range []Spec{
		{},
		{Networks: 1},
		{Networks: 1, ClustersPerNetwork: 1, Services: -1},
		{Networks: 1, ClustersPerNetwork: 1, Services: 1, EndpointsPerService: -1},
		{Networks: 1, ClustersPerNetwork: 1, Services: 2, EndpointsPerService: maxEndpoints},
		{Networks: 1, ClustersPerNetwork: 1, PortsPerService: maxPorts + 1},
		{Networks: 2, ClustersPerNetwork: 1, GatewaysPerCluster: maxGateways},
	} {
		if _, err := Generate(s); err == nil {
			t.Errorf("Generate(%+v): no error", s)
		}
	}
}

func TestAddr(t *testing.T) {
	for _, c := range []struct {
		a, b byte
		i    int
		want string
	}{
		{10, 0, 0, "10.0.0.0"},
		{10, 0, 1<<16 + 2<<8 + 3, "10.1.2.3"},
		{10, 0, maxEndpoints - 1, "10.127.255.255"},
		{10, 128, maxServices - 1, "10.255.255.255"},
		{172, 16, maxGateways - 1, "172.31.255.255"},
	} {
		if got := addr(c.a, c.b, c.i); got != c.want {
			t.Errorf("addr(%d, %d, %d) = %s, want %s", c.a, c.b, c.i, got, c.want)
		}
	}
}
