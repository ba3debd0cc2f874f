package bench

import (
	"fmt"
	"testing"

	"github.com/horizonmesh/horizon/bench/gen"
	"github.com/horizonmesh/horizon/discovery"
)

// BenchmarkClusterSetNew measures discovery.New, which every source runs on
// every change (validation, export merge and the content hash), on the
// shapes of the load scenarios (c) and (d): 2 clusters × 500 services × 20
// endpoints, and 3 clusters × 200 services × 150 endpoints.
func BenchmarkClusterSetNew(b *testing.B) {
	for _, spec := range []gen.Spec{
		{Networks: 2, ClustersPerNetwork: 1, GatewaysPerCluster: 2, Services: 500, EndpointsPerService: 20},
		{Networks: 3, ClustersPerNetwork: 1, GatewaysPerCluster: 2, Services: 200, EndpointsPerService: 150},
	} {
		name := fmt.Sprintf("clusters=%d/services=%d/endpoints=%d", spec.Networks*spec.ClustersPerNetwork, spec.Services, spec.EndpointsPerService)
		b.Run(name, func(b *testing.B) {
			cs, err := gen.Generate(spec)
			if err != nil {
				b.Fatal(err)
			}
			endpoints := 0
			for _, c := range cs.Clusters {
				for _, s := range c.Services {
					endpoints += len(s.Endpoints)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				// New takes the clusters over and normalises in place; they are
				// normalised already, so every round does the same work.
				if _, err := discovery.New(cs.Clusters); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(endpoints), "ns/endpoint")
		})
	}
}
