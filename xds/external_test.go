package xds

import (
	"strconv"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

// TestExternalClustersFollowEnvoySemantics reads the external clusters of
// a sidecar's view against Envoy's documented semantics of their types
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery):
// STATIC clusters list IP addresses, STRICT_DNS and LOGICAL_DNS clusters
// host names Envoy resolves, LOGICAL_DNS exactly one; each in a
// load_assignment of the cluster's name. Health checks carry the fields
// Envoy requires (timeout, interval, both thresholds:
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/health_check.proto).
func TestExternalClustersFollowEnvoySemantics(t *testing.T) {
	cs, g, p := loadCase(t, "testdata/golden/sidecar-external.in.yaml")
	res, err := Render(cs, g, p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		typ   cluster.Cluster_DiscoveryType
		addrs []string
	}{
		"outbound_.80_._.payments.example.com": {cluster.Cluster_STRICT_DNS, []string{"pay-a.example.net:443", "pay-b.example.net:443"}},
		"outbound_.5432_._.geo.example.com":    {cluster.Cluster_STATIC, []string{"192.0.2.10:5432", "192.0.2.20:5432"}},
		"outbound_.7070_._.api.example.com":    {cluster.Cluster_LOGICAL_DNS, []string{"api.example.net:7070"}},
	}
	found := 0
	for _, c := range res.Clusters {
		w, ok := want[c.GetName()]
		if !ok {
			if strings.Contains(c.GetName(), "ledger") {
				t.Errorf("cluster %s rendered for a network that does not reach it", c.GetName())
			}
			continue
		}
		found++
		if c.GetType() != w.typ {
			t.Errorf("%s: type %v, want %v", c.GetName(), c.GetType(), w.typ)
		}
		if c.GetLoadAssignment().GetClusterName() != c.GetName() {
			t.Errorf("%s: load_assignment named %q", c.GetName(), c.GetLoadAssignment().GetClusterName())
		}
		var got []string
		for _, lle := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range lle.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				got = append(got, sa.GetAddress()+":"+itoa(sa.GetPortValue()))
			}
		}
		if strings.Join(got, ",") != strings.Join(w.addrs, ",") {
			t.Errorf("%s: endpoints %v, want %v", c.GetName(), got, w.addrs)
		}
	}
	if found != len(want) {
		t.Fatalf("found %d of the %d external clusters", found, len(want))
	}
	if !containsNote(res.Notes, "external service ledger.example.com: not reachable from network east") {
		t.Errorf("notes %q lack why ledger.example.com is left out", res.Notes)
	}
}

// TestCheckRefusesBadExternalClusters: Check refuses the external cluster
// shapes Envoy would reject or that would not verify the server.
func TestCheckRefusesBadExternalClusters(t *testing.T) {
	cs, g, p := loadCase(t, "testdata/golden/sidecar-external.in.yaml")
	for _, tc := range []struct {
		name, cluster, want string
		edit                func(c *cluster.Cluster)
	}{
		{"logical dns with two hosts", "outbound_.7070_._.api.example.com", "LOGICAL_DNS with 2 endpoints", func(c *cluster.Cluster) {
			lle := c.LoadAssignment.Endpoints[0]
			lle.LbEndpoints = append(lle.LbEndpoints, lle.LbEndpoints[0])
		}},
		{"static host name", "outbound_.5432_._.geo.example.com", `STATIC endpoint "geo.example.net" is not an IP address`, func(c *cluster.Cluster) {
			c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address = socketAddress("geo.example.net", 5432)
		}},
		{"dns with an IP", "outbound_.80_._.payments.example.com", `STRICT_DNS endpoint "192.0.2.1" is not a host name`, func(c *cluster.Cluster) {
			c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address = socketAddress("192.0.2.1", 443)
		}},
		{"no load assignment", "outbound_.80_._.payments.example.com", "without a load_assignment", func(c *cluster.Cluster) {
			c.LoadAssignment = nil
		}},
		{"health check without interval", "outbound_.5432_._.geo.example.com", "health check 0 needs", func(c *cluster.Cluster) {
			c.HealthChecks[0].Interval = nil
		}},
		{"tls without a CA", "outbound_.80_._.payments.example.com", "without a SNI or a trusted CA", func(c *cluster.Cluster) {
			c.TransportSocket = typedSocket("envoy.transport_sockets.tls", &tlsv3.UpstreamTlsContext{Sni: "payments.example.com"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Translate(cs, g, p)
			if err != nil {
				t.Fatal(err)
			}
			edited := false
			for i, c := range res.Clusters {
				if c.GetName() == tc.cluster {
					c = proto.Clone(c).(*cluster.Cluster)
					tc.edit(c)
					res.Clusters[i] = c
					edited = true
				}
			}
			if !edited {
				t.Fatalf("no cluster %s", tc.cluster)
			}
			err = Check(res, cs, g)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func containsNote(notes []string, prefix string) bool {
	for _, n := range notes {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}
