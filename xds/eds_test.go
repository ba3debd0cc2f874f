package xds

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
)

// assignment is res's ClusterLoadAssignment for the Envoy cluster name.
func assignment(t *testing.T, res *Resources, name string) *endpoint.ClusterLoadAssignment {
	t.Helper()
	for _, cla := range res.Endpoints {
		if cla.GetClusterName() == name {
			return cla
		}
	}
	t.Fatalf("no assignment %q", name)
	return nil
}

// TestSplitHorizonWeights is the rule table of split-horizon EDS: for a proxy
// on each network, which addresses it gets for echo, with weight@priority.
func TestSplitHorizonWeights(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/splithorizon.yaml")
	set := discovery.Host(discovery.ServiceKey{Namespace: "demo", Name: "echo"}, discovery.ClusterSetWide)
	local := discovery.Host(discovery.ServiceKey{Namespace: "demo", Name: "echo"}, discovery.ClusterLocal)
	tests := []struct {
		name    string
		cluster string
		host    string
		want    map[string]string
	}{{
		// Own network direct (pods at their target port, the endpoint without
		// mutual TLS included); west over its two gateways, 5 ready endpoints
		// spread 2+3 whatever their zones (the remainder goes to a gateway picked
		// by a hash of the cluster name); north over its one gateway; south
		// has no gateway and contributes nothing.
		name: "east proxy sees own pods, gateways of west and north", cluster: "east-a", host: set,
		want: map[string]string{
			"10.0.1.1:9080": "1@0", "10.0.1.2:9080": "1@0", "10.0.1.3:9080": "1@0",
			"10.0.2.1:9080":    "1@1",
			"10.1.0.100:15443": "2@2", "10.1.0.101:15443": "3@2",
			"10.3.0.100:15443": "1@2",
		},
	}, {
		// Two clusters sharing east's network and gateway address: the
		// address appears once, weighted by both clusters' mutual-TLS ready
		// endpoints (2 + 1; the one without mutual TLS never crosses). West's
		// own not-ready endpoint stays in (UNHEALTHY, policyfile.NotReadyUnhealthy).
		name: "west proxy sees one shared east gateway", cluster: "west", host: set,
		want: map[string]string{
			"10.1.1.1:9080": "1@0", "10.1.1.2:9080": "1@0", "10.1.1.3:9080": "1@0", "10.1.1.6:9080": "1@0",
			"10.1.1.4:9080": "1@1", "10.1.1.5:9080": "1@1",
			"10.0.0.100:15443": "3@2",
			"10.3.0.100:15443": "1@2",
		},
	}, {
		name: "south proxy reaches everyone through gateways", cluster: "south", host: set,
		want: map[string]string{
			"10.2.1.1:9080":    "1@0",
			"10.0.0.100:15443": "3@1",
			"10.1.0.100:15443": "2@1", "10.1.0.101:15443": "3@1",
			"10.3.0.100:15443": "1@1",
		},
	}, {
		name: "cluster.local stays in the caller's cluster", cluster: "east-b", host: local,
		want: map[string]string{"10.0.2.1:9080": "1@0"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Proxy{ID: "p", Role: Sidecar, Cluster: tt.cluster}
			if err := p.Resolve(cs); err != nil {
				t.Fatal(err)
			}
			res, err := Translate(cs, p.Group(), Policy{})
			if err != nil {
				t.Fatal(err)
			}
			if err := Check(res, cs, p.Group()); err != nil {
				t.Fatal(err)
			}
			got := xdstest.Endpoints(assignment(t, res, discovery.ClusterName(tt.host, 8080)))
			if !maps.Equal(got, tt.want) {
				t.Errorf("got  %s\nwant %s", xdstest.Render(got), xdstest.Render(tt.want))
			}
		})
	}

	// South has no gateway: the views that lose it say so.
	p := &Proxy{ID: "p", Role: Sidecar, Cluster: "east-a"}
	_ = p.Resolve(cs)
	res, _ := Translate(cs, p.Group(), Policy{})
	if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, "network south has no usable gateway") }) {
		t.Errorf("notes do not explain south's absence: %q", res.Notes)
	}
}

func TestSpread(t *testing.T) {
	tests := []struct {
		n    uint32
		k    int
		want uint32 // sum
	}{{5, 2, 5}, {1, 3, 1}, {0, 2, 0}, {7, 7, 7}, {100, 3, 100}}
	for _, tt := range tests {
		w := spread(tt.n, tt.k, "x")
		sum, lo, hi := uint32(0), w[0], w[0]
		for _, v := range w {
			sum += v
			lo, hi = min(lo, v), max(hi, v)
		}
		if sum != tt.want || hi-lo > 1 {
			t.Errorf("spread(%d, %d) = %v: want sum %d, evenly", tt.n, tt.k, w, tt.want)
		}
	}
}

// TestPeerGatewayAddresses: a network names the address its peers use. West,
// on east's private network, reaches east's gateway at its private address;
// north, not named, at the public one; Check accepts each view against the
// addresses advertised to it, and refuses another network's.
func TestPeerGatewayAddresses(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/peers.yaml")
	echo := discovery.ClusterName(discovery.Host(discovery.ServiceKey{Namespace: "demo", Name: "echo"}, discovery.ClusterSetWide), 8080)
	for _, tt := range []struct {
		cluster string
		want    map[string]string
	}{
		{"west", map[string]string{"10.1.1.1:8080": "1@0", "10.0.0.10:15443": "2@1"}},
		{"north", map[string]string{"10.2.1.1:8080": "1@0", "203.0.113.10:15443": "2@1", "10.1.0.10:15443": "1@1"}},
	} {
		p := &Proxy{ID: "p", Role: Sidecar, Cluster: tt.cluster}
		if err := p.Resolve(cs); err != nil {
			t.Fatal(err)
		}
		res, err := Translate(cs, p.Group(), Policy{})
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(res, cs, p.Group()); err != nil {
			t.Fatalf("%s: %v", tt.cluster, err)
		}
		if got := xdstest.Endpoints(assignment(t, res, echo)); !maps.Equal(got, tt.want) {
			t.Errorf("%s: got  %s\nwant %s", tt.cluster, xdstest.Render(got), xdstest.Render(tt.want))
		}
	}
	// West's view checked as north's: its private address is not north's.
	west := &Proxy{ID: "p", Role: Sidecar, Cluster: "west"}
	north := &Proxy{ID: "p", Role: Sidecar, Cluster: "north"}
	if err := errors.Join(west.Resolve(cs), north.Resolve(cs)); err != nil {
		t.Fatal(err)
	}
	res, err := Translate(cs, west.Group(), Policy{})
	if err != nil {
		t.Fatal(err)
	}
	g := north.Group()
	g.Network = "west-impostor"
	if err := Check(res, cs, g); err == nil || !strings.Contains(err.Error(), "10.0.0.10:15443") {
		t.Errorf("Check of west's view for another network: %v, want the private address refused", err)
	}
}
