package bench_test

import (
	"slices"
	"testing"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/xds"
)

// routedPolicy gives one host of the view a route rule (half of svc-0's
// requests to svc-1): every other host is as without routes.
const routedPolicy = `
routes:
  - host: svc-0.ns-0.svc.clusterset.local
    rules:
      - name: half
        match: {path: {prefix: /}}
        to:
          - {weight: 50}
          - {service: ns-0/svc-1, weight: 50}
`

// BenchmarkRenderAgain measures what a one-endpoint change costs one view
// the server renders again (xds/server: Cache.Render): xds.RenderFrom with
// the view's previous memo, alternating between two ClusterSets that differ
// in one endpoint of the last service. routes=1 gives one host a route
// rule: its port's route configuration (every HTTP host of the view) is
// remembered as without rules.
func BenchmarkRenderAgain(b *testing.B) {
	for _, s := range []shape{{10, 100}, {10, 1000}} {
		for _, routed := range []bool{false, true} {
			name := s.String() + "/routes=0"
			if routed {
				name = s.String() + "/routes=1"
			}
			b.Run(name, func(b *testing.B) {
				cs := generate(b, s)
				clusters := slices.Clone(cs.Clusters)
				last := len(clusters[0].Services) - 1
				clusters[0].Services = slices.Clone(clusters[0].Services)
				svc := &clusters[0].Services[last]
				svc.Endpoints = slices.Clone(svc.Endpoints)
				svc.Endpoints[0].Address = "10.255.0.1"
				other, err := discovery.New(clusters)
				if err != nil {
					b.Fatal(err)
				}
				var p xds.Policy
				if routed {
					pol, err := policyfile.Parse("routes.yaml", []byte(routedPolicy), policyfile.TopologyOf(cs))
					if err != nil {
						b.Fatal(err)
					}
					p.File = pol
				}
				g := view(xds.Sidecar)
				res, memo, err := xds.RenderFrom(cs, g, p, nil)
				if err != nil {
					b.Fatal(err)
				}
				if routed && !slices.ContainsFunc(res.Routes, func(r *route.RouteConfiguration) bool { return hasRule(r, "half") }) {
					b.Fatal("the route rule is not in the view")
				}
				sets := [2]*discovery.ClusterSet{other, cs}
				b.ReportAllocs()
				cpu := startCPU()
				i := 0
				for b.Loop() {
					_, memo, err = xds.RenderFrom(sets[i%2], g, p, memo)
					if err != nil {
						b.Fatal(err)
					}
					i++
				}
				cpu.report(b)
			})
		}
	}
}

// hasRule reports whether a route configuration has a route named name.
func hasRule(rc *route.RouteConfiguration, name string) bool {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetName() == name {
				return true
			}
		}
	}
	return false
}
