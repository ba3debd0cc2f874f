package discovery

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Subset is a part of a service's endpoints that a route can send traffic
// to: those carrying every one of Labels (any endpoint when Name is ""),
// in member cluster Cluster (any cluster when ""). The policy file's routes
// declare them (subset: v2, cluster: west-1); the Envoy cluster and the SNI
// that carry a subset are named by SubsetClusterName, so that a sidecar and
// a network's east-west gateway agree on them: the gateway routes a
// subset's SNI to that subset's endpoints only (the gateway's SNI names the
// subset; it never filters by anything the connection does not say).
type Subset struct {
	// Name is the subset's name in the policy file, a DNS label; "" for
	// every endpoint (a cluster share without a label subset).
	Name string
	// Labels the subset's endpoints carry (every one, same value).
	Labels map[string]string
	// Cluster is the member cluster whose endpoints alone are in the
	// subset; "" for every cluster.
	Cluster string
}

// AllSubset is the name segment of a cluster share without a label subset
// (outbound_.8080_.all.west-1_.<host>); no label subset may be called so.
const AllSubset = "all"

// Segment is the subset's part of its cluster name: "v2", "v2.west-1", or
// "all.west-1" for every endpoint of cluster west-1.
func (s Subset) Segment() string {
	name := cmp.Or(s.Name, AllSubset)
	if s.Cluster == "" {
		return name
	}
	return name + "." + s.Cluster
}

// IsZero reports whether the subset is the whole service.
func (s Subset) IsZero() bool { return s.Name == "" && s.Cluster == "" }

// Has reports whether an endpoint of the given member cluster is in the
// subset.
func (s Subset) Has(cluster string, e *Endpoint) bool {
	if s.Cluster != "" && s.Cluster != cluster {
		return false
	}
	for k, v := range s.Labels {
		if got, ok := e.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// String renders the subset as explain and notes show it:
// "subset v2 {version=v2} in west-1", "cluster west-1's share".
func (s Subset) String() string {
	if s.Name == "" {
		if s.Cluster == "" {
			return "the whole service"
		}
		return "cluster " + s.Cluster + "'s share"
	}
	var b strings.Builder
	b.WriteString("subset " + s.Name)
	if len(s.Labels) > 0 {
		b.WriteString(" {")
		for i, k := range slices.Sorted(maps.Keys(s.Labels)) {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(k + "=" + s.Labels[k])
		}
		b.WriteString("}")
	}
	if s.Cluster != "" {
		b.WriteString(" in " + s.Cluster)
	}
	return b.String()
}

// SubsetClusterName returns the Envoy cluster name, and SNI, of a subset of
// a host and port: outbound_.<port>_.<segment>_.<host>, Istio's subset form
// (outbound_.8080_.v2_.echo.demo.svc.clusterset.local). The whole service
// (a zero Subset) is ClusterName's outbound_.<port>_._.<host>.
func SubsetClusterName(host string, port uint32, s Subset) string {
	if s.IsZero() {
		return ClusterName(host, port)
	}
	return "outbound_." + strconv.Itoa(int(port)) + "_." + s.Segment() + "_." + host
}

// ParseSubsetClusterName splits a name made by SubsetClusterName (or
// ClusterName) into its host, port and subset segment ("" for the whole
// service).
func ParseSubsetClusterName(name string) (host string, port uint32, segment string, err error) {
	if h, p, err := ParseClusterName(name); err == nil {
		return h, p, "", nil
	}
	rest, ok := strings.CutPrefix(name, "outbound_.")
	if !ok {
		return "", 0, "", fmt.Errorf("cluster name %q: missing outbound_. prefix", name)
	}
	ps, rest, ok1 := strings.Cut(rest, "_.")
	seg, host, ok2 := strings.Cut(rest, "_.")
	if !ok1 || !ok2 || seg == "" || host == "" {
		return "", 0, "", fmt.Errorf("cluster name %q: want outbound_.<port>_.<subset>_.<host>", name)
	}
	n, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || n == 0 {
		return "", 0, "", fmt.Errorf("cluster name %q: bad port %q", name, ps)
	}
	return host, uint32(n), seg, nil
}
