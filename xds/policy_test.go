package xds

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
)

// TestPolicyFileEDS is the rule table of a policy file's EDS: for a proxy in
// a cluster and a rule set, the addresses (or localities) of echo's
// clusterset.local assignment with weight@priority.
func TestPolicyFileEDS(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/splithorizon.yaml")
	echo := discovery.ClusterName(discovery.Host(discovery.ServiceKey{Namespace: "demo", Name: "echo"}, discovery.ClusterSetWide), 8080)
	tests := []struct {
		name, policy, cluster string
		labels                map[string]string // the proxy's LABELS
		endpoints             map[string]string // address -> weight@priority
		localities            map[string]string // region/zone -> weight@priority
		note, noNote          string
	}{{
		// Own zone, own region, then the failover list (eu-north, reached
		// through its gateway with its cluster's locality), then the rest.
		name: "failover orders other regions", policy: "failover.yaml", cluster: "east-a",
		endpoints: map[string]string{
			"10.0.1.1:9080": "1@0", "10.0.1.2:9080": "1@0", "10.0.1.3:9080": "1@0",
			"10.0.2.1:9080":    "1@1",
			"10.3.0.100:15443": "1@2",
			"10.1.0.100:15443": "2@3", "10.1.0.101:15443": "3@3",
		},
	}, {
		// [network, cluster]: east-b shares east-a's network but not its
		// cluster; gateway entries carry their clusters' network.
		name: "failoverPriority by network and cluster", policy: "network-cluster.yaml", cluster: "east-a",
		endpoints: map[string]string{
			"10.0.1.1:9080": "1@0", "10.0.1.2:9080": "1@0", "10.0.1.3:9080": "1@0",
			"10.0.2.1:9080":    "1@1",
			"10.1.0.100:15443": "2@2", "10.1.0.101:15443": "3@2",
			"10.3.0.100:15443": "1@2",
		},
	}, {
		// West's own not-ready endpoint stays in, UNHEALTHY, so that the
		// failover threshold sees it.
		name: "own cluster first, unready endpoints stay in", policy: "network-cluster.yaml", cluster: "west",
		endpoints: map[string]string{
			"10.1.1.1:9080": "1@0", "10.1.1.2:9080": "1@0", "10.1.1.3:9080": "1@0",
			"10.1.1.4:9080": "1@0", "10.1.1.5:9080": "1@0", "10.1.1.6:9080": "1@0",
			"10.0.0.100:15443": "3@1", "10.3.0.100:15443": "1@1",
		},
	}, {
		// Pinned to east-a and west, weighted 3:2: the shared east gateway
		// carries only east-a's 2 endpoints (x3); south's own pods, north
		// and east-b get nothing.
		name: "pin and cluster weights", policy: "pin-weights.yaml", cluster: "south",
		endpoints: map[string]string{
			"10.0.0.100:15443": "6@0",
			"10.1.0.100:15443": "4@0", "10.1.0.101:15443": "6@0",
		},
	}, {
		// Gateways keep their cluster's locality; south's own locality has
		// no share and is left out.
		name: "distribute over gateways", policy: "distribute.yaml", cluster: "south",
		localities: map[string]string{"us-east/us-east-1a": "50@0", "us-west/us-west-2a": "30@0", "eu-north/eu-north-1a": "20@0"},
		note:       "gives locality eu-south/eu-south-1a",
	}, {
		// us-east/* gets 80, split 3:1 by endpoints (east-a has three, east-b one).
		name: "distribute splits a share by endpoints", policy: "distribute.yaml", cluster: "east-a",
		localities: map[string]string{"us-east/us-east-1a": "60@0", "us-east/us-east-1b": "20@0", "us-west/us-west-2a": "20@0"},
		note:       "gives locality eu-north/eu-north-1a",
	}, {
		// distribute and failover in one rule: us-east's zones share
		// priority 0 at 70/30 (not 3:1 by endpoints); then the failover
		// list (eu-north), then the rest (us-west); south has no gateway.
		name: "distribute within a priority, failover between", policy: "distribute-failover.yaml", cluster: "east-a",
		localities: map[string]string{
			"us-east/us-east-1a": "70@0", "us-east/us-east-1b": "30@0",
			"eu-north/eu-north-1a": "1@1",
			"us-west/us-west-2a":   "5@2",
		},
		noNote: "no share",
	}, {
		// A proxy in a region without a distribute entry ranks as usual.
		name: "distribute and failover, proxy outside the distribute", policy: "distribute-failover.yaml", cluster: "west",
		localities: map[string]string{
			"us-west/us-west-2a": "4@0", "us-west/us-west-2b": "2@1",
			"eu-north/eu-north-1a": "1@2", "us-east/us-east-1a": "3@2",
		},
	}, {
		// failoverPriority given next to distribute: what no share names
		// follows, ranked by it (every other region alike).
		name: "distribute with failoverPriority", policy: "distribute-priority.yaml", cluster: "east-a",
		localities: map[string]string{
			"us-east/us-east-1a": "90@0", "us-east/us-east-1b": "10@0",
			"eu-north/eu-north-1a": "1@1", "us-west/us-west-2a": "5@1",
		},
		noNote: "no share",
	}, {
		// Without a way to fail over, distribute leaves out what no share
		// names (Istio's distribute).
		name: "distribute alone leaves the rest out", policy: "distribute-75-25-east.yaml", cluster: "east-a",
		localities: map[string]string{"us-east/us-east-1a": "75@0", "us-east/us-east-1b": "25@0"},
		note:       "gives locality eu-north/eu-north-1a/ no share",
	}, {
		// [tier, region]: the proxy's tier (web) first, in its region, then
		// web elsewhere (west's gateway entry carries the tier all of west's
		// endpoints share), then every other tier and endpoints without one.
		name: "label key compares the proxy's label", policy: "tier.yaml", cluster: "east-a",
		labels: map[string]string{"tier": "web", "app": "ignored"},
		endpoints: map[string]string{
			"10.0.1.1:9080": "1@0", "10.0.2.1:9080": "1@0",
			"10.1.0.100:15443": "2@1", "10.1.0.101:15443": "3@1",
			"10.0.1.2:9080": "1@2", "10.0.1.3:9080": "1@2", "10.3.0.100:15443": "1@2",
		},
		noNote: "does not declare",
	}, {
		// The other tier's proxy prefers api: its own cluster's, then north's.
		name: "label key, another value", policy: "tier.yaml", cluster: "east-a",
		labels: map[string]string{"tier": "api"},
		endpoints: map[string]string{
			"10.0.1.2:9080":    "1@0",
			"10.3.0.100:15443": "1@1",
			"10.0.1.1:9080":    "1@2", "10.0.1.3:9080": "1@2", "10.0.2.1:9080": "1@2",
			"10.1.0.100:15443": "2@2", "10.1.0.101:15443": "3@2",
		},
	}, {
		// A proxy without the label agrees with no endpoint on the first key:
		// one priority, and a note.
		name: "label key the proxy does not declare", policy: "tier.yaml", cluster: "east-a",
		endpoints: map[string]string{
			"10.0.1.1:9080": "1@0", "10.0.1.2:9080": "1@0", "10.0.1.3:9080": "1@0", "10.0.2.1:9080": "1@0",
			"10.1.0.100:15443": "2@0", "10.1.0.101:15443": "3@0", "10.3.0.100:15443": "1@0",
		},
		note: `failoverPriority key "tier" is a label the proxy does not declare`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := fixture.Policy(t, "testdata/policy/"+tt.policy, cs)
			p := &Proxy{ID: "p", Role: Sidecar, Cluster: tt.cluster, Labels: tt.labels}
			if err := p.Resolve(cs); err != nil {
				t.Fatal(err)
			}
			policy := Policy{File: pol}
			g := p.GroupFor(policy.LabelKeys())
			res, err := Translate(cs, g, policy)
			if err != nil {
				t.Fatal(err)
			}
			if err := Check(res, cs, g); err != nil {
				t.Fatal(err)
			}
			if tt.endpoints != nil {
				if got := xdstest.Endpoints(assignment(t, res, echo)); !maps.Equal(got, tt.endpoints) {
					t.Errorf("endpoints\ngot  %s\nwant %s", xdstest.Render(got), xdstest.Render(tt.endpoints))
				}
			}
			if tt.localities != nil {
				got := xdstest.Localities(assignment(t, res, echo))
				if !maps.Equal(got, tt.localities) {
					t.Errorf("localities\ngot  %s\nwant %s", xdstest.Render(got), xdstest.Render(tt.localities))
				}
			}
			if tt.note != "" && !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, tt.note) }) {
				t.Errorf("no note %q in %q", tt.note, res.Notes)
			}
			if tt.noNote != "" && slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, tt.noNote) }) {
				t.Errorf("note %q in %q", tt.noNote, res.Notes)
			}
		})
	}
}

func TestApportion(t *testing.T) {
	tests := []struct {
		n    uint64
		w    []uint64
		want []uint64
	}{
		{80, []uint64{3, 1}, []uint64{60, 20}},
		{100, []uint64{1, 1, 1}, []uint64{34, 33, 33}},
		{1, []uint64{1, 1}, []uint64{1, 0}},
		{10, []uint64{0, 0}, []uint64{0, 0}},
	}
	for _, tt := range tests {
		if got := apportion(tt.n, tt.w); !slices.Equal(got, tt.want) {
			t.Errorf("apportion(%d, %v) = %v, want %v", tt.n, tt.w, got, tt.want)
		}
	}
}

// A share too small for its localities is scaled, never leaving one at 0,
// and the shares keep their proportions.
func TestDistributeScales(t *testing.T) {
	tr := &translator{out: &Resources{}}
	a, b, n := discovery.Locality{Region: "r", Zone: "a"}, discovery.Locality{Region: "r", Zone: "b"}, discovery.Locality{Region: "n"}
	eps := []lbEndpoint{{address: "a", weight: 1, locality: a}, {address: "b", weight: 1, locality: b}, {address: "c", weight: 1, locality: n}}
	d := policyfile.Distribute{To: []policyfile.Share{{To: policyfile.Pattern{Region: "n"}, Weight: 99}, {To: policyfile.Pattern{Region: "r"}, Weight: 1}}}
	_, w := tr.distribute("x", d, eps, false)
	want := map[discovery.Locality]uint32{a: 5, b: 5, n: 990}
	if !maps.Equal(w, want) {
		t.Errorf("weights %v, want %v", w, want)
	}
}
