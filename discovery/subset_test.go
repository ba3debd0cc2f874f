package discovery

import "testing"

// TestSubsetClusterName: the names of a subset's Envoy cluster and SNI,
// and reading them back.
func TestSubsetClusterName(t *testing.T) {
	host := "echo.demo.svc.clusterset.local"
	for _, tc := range []struct {
		s       Subset
		name    string
		segment string
	}{
		{Subset{}, "outbound_.8080_._.echo.demo.svc.clusterset.local", ""},
		{Subset{Name: "v2", Labels: map[string]string{"version": "v2"}}, "outbound_.8080_.v2_.echo.demo.svc.clusterset.local", "v2"},
		{Subset{Cluster: "west-1"}, "outbound_.8080_.all.west-1_.echo.demo.svc.clusterset.local", "all.west-1"},
		{Subset{Name: "v2", Cluster: "west-1"}, "outbound_.8080_.v2.west-1_.echo.demo.svc.clusterset.local", "v2.west-1"},
	} {
		if got := SubsetClusterName(host, 8080, tc.s); got != tc.name {
			t.Errorf("SubsetClusterName(%+v) = %s, want %s", tc.s, got, tc.name)
		}
		h, p, seg, err := ParseSubsetClusterName(tc.name)
		if err != nil || h != host || p != 8080 || seg != tc.segment {
			t.Errorf("ParseSubsetClusterName(%s) = %s %d %q %v", tc.name, h, p, seg, err)
		}
	}
	for _, bad := range []string{"inbound_.8080_.v2_.x", "outbound_.0_.v2_.x", "outbound_.8080_.v2", "outbound_.8080_._"} {
		if _, _, _, err := ParseSubsetClusterName(bad); err == nil {
			t.Errorf("ParseSubsetClusterName(%q) accepted it", bad)
		}
	}
}

// TestSubsetHas: labels must all match; a cluster share keeps its cluster.
func TestSubsetHas(t *testing.T) {
	e := &Endpoint{Labels: map[string]string{"version": "v2", "tier": "web"}}
	for _, tc := range []struct {
		s       Subset
		cluster string
		want    bool
	}{
		{Subset{}, "east-1", true},
		{Subset{Name: "v2", Labels: map[string]string{"version": "v2"}}, "east-1", true},
		{Subset{Name: "v2web", Labels: map[string]string{"version": "v2", "tier": "api"}}, "east-1", false},
		{Subset{Name: "v1", Labels: map[string]string{"version": "v1"}}, "east-1", false},
		{Subset{Cluster: "west-1"}, "east-1", false},
		{Subset{Name: "v2", Labels: map[string]string{"version": "v2"}, Cluster: "east-1"}, "east-1", true},
		{Subset{Name: "zone", Labels: map[string]string{"zone": ""}}, "east-1", false}, // absent is not empty
	} {
		if got := tc.s.Has(tc.cluster, e); got != tc.want {
			t.Errorf("%v.Has(%s) = %v, want %v", tc.s, tc.cluster, got, tc.want)
		}
	}
}
