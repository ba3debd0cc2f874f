package gateway

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
)

// table flattens a gateway's configuration into SNI -> its endpoints, each
// "zone/address:port health weight", after checking that the listener's
// chains, the clusters and the assignments name the same SNIs.
func table(t *testing.T, r Resources) map[string][]string {
	t.Helper()
	var chains, clusters, assignments []string
	for _, l := range r.Listeners {
		for _, fc := range l.GetFilterChains() {
			chains = append(chains, fc.GetFilterChainMatch().GetServerNames()...)
		}
	}
	for _, c := range r.Clusters {
		clusters = append(clusters, c.GetName())
	}
	out := map[string][]string{}
	for _, cla := range r.Endpoints {
		assignments = append(assignments, cla.GetClusterName())
		var eps []string
		for _, lle := range cla.GetEndpoints() {
			for _, lb := range lle.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				eps = append(eps, fmt.Sprintf("%s/%s:%d %s %d", lle.GetLocality().GetZone(), sa.GetAddress(), sa.GetPortValue(),
					lb.GetHealthStatus(), lb.GetLoadBalancingWeight().GetValue()))
			}
		}
		out[cla.GetClusterName()] = eps
	}
	if !slices.Equal(chains, clusters) || !slices.Equal(clusters, assignments) || !slices.IsSorted(clusters) {
		t.Fatalf("chains %v, clusters %v, assignments %v: want the same sorted names", chains, clusters, assignments)
	}
	if len(r.Listeners) > 1 || (len(r.Listeners) == 0) != (len(chains) == 0) {
		t.Fatalf("%d listeners for %d chains: want one listener exactly when there are chains", len(r.Listeners), len(chains))
	}
	return out
}

func sni(svc string, port uint32) string {
	return discovery.ClusterName(discovery.Host(discovery.ServiceKey{Namespace: "demo", Name: svc}, discovery.ClusterSetWide), port)
}

func TestTranslate(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/clusterset.yaml")
	tests := []struct {
		name    string
		network string
		want    map[string][]string
	}{
		{
			// Two clusters on east merge into one cluster per SNI; the
			// draining endpoint drains, the not-ready and plaintext ones are
			// left out; unexported (admin), plaintext-only (legacy), not-ready
			// (asleep) services and the UDP port get nothing; private counts
			// only the cluster that exports it.
			name:    "east",
			network: "east",
			want: map[string][]string{
				sni("dns", 53): {"us-east-1a/10.0.1.40:53 HEALTHY 1"},
				sni("echo", 7070): {
					"us-east-1a/10.0.1.1:7070 HEALTHY 1",
					"us-east-1a/10.0.1.3:7070 DRAINING 1",
					"us-east-1b/10.0.1.2:7071 HEALTHY 1",
					"us-east-1b/10.0.2.1:7070 HEALTHY 1",
				},
				sni("echo", 8080): {
					"us-east-1a/10.0.1.1:9080 HEALTHY 1",
					"us-east-1a/10.0.1.3:9080 DRAINING 1",
					"us-east-1b/10.0.1.2:9080 HEALTHY 1",
					"us-east-1b/10.0.2.1:9080 HEALTHY 1",
				},
				sni("private", 80): {"us-east-1b/10.0.2.9:8000 HEALTHY 1"},
			},
		},
		{
			// No endpoint of east ever appears on west's gateway.
			name:    "west",
			network: "west",
			want: map[string][]string{
				sni("echo", 7070):   {"us-west-2a/10.1.1.1:7070 HEALTHY 1"},
				sni("echo", 8080):   {"us-west-2a/10.1.1.1:9080 HEALTHY 1"},
				sni("westonly", 80): {"us-west-2a/10.1.1.5:80 HEALTHY 1"},
			},
		},
		{
			// south holds echo but does not export it: nothing, not even a listener.
			name:    "nothing exported",
			network: "south",
			want:    map[string][]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Translate(cs, tt.network, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := table(t, r)
			if !equalTables(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", render(got), render(tt.want))
			}
			if err := Check(&r); err != nil {
				t.Errorf("Check: %v", err)
			}
		})
	}
}

// TestLocalityWeights checks that each locality weighs the sum of its
// endpoints, as xds weighs them.
func TestLocalityWeights(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/clusterset.yaml")
	r, err := Translate(cs, "east", Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint32{}
	for _, cla := range r.Endpoints {
		if cla.GetClusterName() != sni("echo", 7070) {
			continue
		}
		for _, lle := range cla.GetEndpoints() {
			if lle.GetPriority() != 0 {
				t.Errorf("locality %s: priority %d, want 0", lle.GetLocality().GetZone(), lle.GetPriority())
			}
			got[lle.GetLocality().GetZone()] = lle.GetLoadBalancingWeight().GetValue()
		}
	}
	if want := map[string]uint32{"us-east-1a": 2, "us-east-1b": 2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("locality weights %v, want %v", got, want)
	}
}

func TestListener(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/clusterset.yaml")
	for _, tt := range []struct {
		opts Options
		name string
		port uint32
	}{
		{Options{}, "gateway-15443", 15443},
		{Options{Port: 8443}, "gateway-8443", 8443},
	} {
		r, err := Translate(cs, "west", tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		l := r.Listeners[0]
		sa := l.GetAddress().GetSocketAddress()
		if l.GetName() != tt.name || sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != tt.port {
			t.Errorf("listener %q on %s:%d, want %q on 0.0.0.0:%d", l.GetName(), sa.GetAddress(), sa.GetPortValue(), tt.name, tt.port)
		}
		if f := l.GetListenerFilters(); len(f) != 1 || f[0].GetName() != "envoy.filters.listener.tls_inspector" {
			t.Errorf("listener filters %v, want the TLS inspector alone", f)
		}
		if l.GetDefaultFilterChain() != nil {
			t.Error("a default filter chain would catch unknown SNIs")
		}
		for _, fc := range l.GetFilterChains() {
			if len(fc.GetFilters()) != 1 || fc.GetFilters()[0].GetName() != "envoy.filters.network.tcp_proxy" || fc.GetTransportSocket() != nil {
				t.Errorf("filter chain %q: want a bare tcp_proxy (TLS passes through)", fc.GetName())
			}
		}
	}
}

func TestErrors(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/clusterset.yaml")
	if _, err := Translate(cs, "mars", Options{}); err == nil || !strings.Contains(err.Error(), `"mars"`) {
		t.Errorf("unknown network: err %v", err)
	}
	if _, err := Translate(cs, "east", Options{Port: 70000}); err == nil || !strings.Contains(err.Error(), "70000") {
		t.Errorf("bad port: err %v", err)
	}
}

// TestDeterministic renders twice, and from the same file parsed twice:
// equal input gives byte-equal output.
func TestDeterministic(t *testing.T) {
	a, err := Translate(fixture.ClusterSet(t, "testdata/clusterset.yaml"), "east", Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Translate(fixture.ClusterSet(t, "testdata/clusterset.yaml"), "east", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(marshalAll(t, a), marshalAll(t, b)) || !slices.Equal(a.Notes, b.Notes) {
		t.Fatal("two renderings of the same input differ")
	}
}

func marshalAll(t *testing.T, r Resources) []byte {
	t.Helper()
	var msgs []proto.Message
	for _, l := range r.Listeners {
		msgs = append(msgs, l)
	}
	for _, c := range r.Clusters {
		msgs = append(msgs, c)
	}
	for _, e := range r.Endpoints {
		msgs = append(msgs, e)
	}
	var out []byte
	for _, m := range msgs {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// TestCheckCatches breaks a valid configuration in the ways Check exists to
// catch.
func TestCheckCatches(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/clusterset.yaml")
	tests := []struct {
		name    string
		breakIt func(r *Resources)
		want    string
	}{
		{"dangling chain", func(r *Resources) { r.Clusters = r.Clusters[1:] }, "unknown cluster"},
		{"missing assignment", func(r *Resources) { r.Endpoints = r.Endpoints[1:] }, "0 ClusterLoadAssignments"},
		{"two assignments", func(r *Resources) { r.Endpoints = append(r.Endpoints, r.Endpoints[0]) }, "2 ClusterLoadAssignments"},
		{"catch-all", func(r *Resources) { r.Listeners[0].FilterChains[0].FilterChainMatch = nil }, "catch-all"},
		{"unweighted locality", func(r *Resources) { r.Endpoints[0].Endpoints[0].LoadBalancingWeight.Value = 0 }, "no weight"},
		{"duplicate address", func(r *Resources) {
			lle := r.Endpoints[0].Endpoints[0]
			lle.LbEndpoints = append(lle.LbEndpoints, lle.LbEndpoints[0])
			lle.LoadBalancingWeight.Value++
		}, "appears twice"},
		{"invalid proto", func(r *Resources) { r.Clusters[0].Name = "" }, "invalid Cluster.Name"},
		{"unbounded listener", func(r *Resources) { r.Listeners[0].PerConnectionBufferLimitBytes = nil }, "no per-connection buffer limit"},
		{"unbounded cluster", func(r *Resources) { r.Clusters[0].PerConnectionBufferLimitBytes = nil }, "no per-connection buffer limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Translate(cs, "east", Options{})
			if err != nil {
				t.Fatal(err)
			}
			tt.breakIt(&r)
			if err := Check(&r); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func equalTables(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

func render(m map[string][]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s\n", k)
		for _, e := range m[k] {
			fmt.Fprintf(&b, "    %s\n", e)
		}
	}
	return b.String()
}

// TestBufferLimits: the gateway's listener and clusters bound each
// connection's buffers. The gateway takes connections from other networks;
// Envoy's edge guidance is 32 KiB for listener and cluster buffers, against
// a 1 MiB default
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/best_practices/edge;
// Listener.per_connection_buffer_limit_bytes,
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/listener/v3/listener.proto,
// and Cluster.per_connection_buffer_limit_bytes,
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto).
func TestBufferLimits(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/clusterset.yaml")
	for _, tt := range []struct {
		opts Options
		want uint32
	}{
		{Options{}, 32 << 10},
		{Options{BufferLimitBytes: 64 << 10}, 64 << 10},
	} {
		r, err := Translate(cs, "east", tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range r.Listeners {
			if got := l.GetPerConnectionBufferLimitBytes(); got.GetValue() != tt.want {
				t.Errorf("%+v: listener %s buffer limit %v, want %d", tt.opts, l.GetName(), got, tt.want)
			}
		}
		for _, c := range r.Clusters {
			if got := c.GetPerConnectionBufferLimitBytes(); got.GetValue() != tt.want {
				t.Errorf("%+v: cluster %s buffer limit %v, want %d", tt.opts, c.GetName(), got, tt.want)
			}
		}
	}
}
