package xdstest

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// Endpoints flattens an assignment into "address:port" → "weight@priority",
// the form of a split-horizon rule table.
func Endpoints(cla *endpoint.ClusterLoadAssignment) map[string]string {
	out := map[string]string{}
	for _, lle := range cla.GetEndpoints() {
		for _, lb := range lle.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out[fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())] = fmt.Sprintf("%d@%d", lb.GetLoadBalancingWeight().GetValue(), lle.GetPriority())
		}
	}
	return out
}

// Localities flattens an assignment into "region/zone" → "weight@priority"
// of each locality.
func Localities(cla *endpoint.ClusterLoadAssignment) map[string]string {
	out := map[string]string{}
	for _, lle := range cla.GetEndpoints() {
		l := lle.GetLocality()
		out[l.GetRegion()+"/"+l.GetZone()] = fmt.Sprintf("%d@%d", lle.GetLoadBalancingWeight().GetValue(), lle.GetPriority())
	}
	return out
}

// Render prints a table as "key=value " pairs in key order, for a failure
// message.
func Render(table map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(table)) {
		fmt.Fprintf(&b, "%s=%s ", k, table[k])
	}
	return b.String()
}
