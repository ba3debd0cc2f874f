package bench_test

import (
	"runtime"
	"strings"
	"testing"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/bench/gen"
	"github.com/horizonmesh/horizon/xds"
)

// grpcDefaultMaxRecv is grpc-go's default receive limit, the smallest limit
// among Horizon's clients (Envoy's is configurable, unlimited by default).
const grpcDefaultMaxRecv = 4 << 20

// hugeShapes are the huge inputs of issue 20: a Service with 100 ports,
// 100,000 endpoints in one service, 10,000 services.
var hugeShapes = []struct {
	name string
	spec gen.Spec
}{
	{"100-ports", gen.Spec{Networks: 2, ClustersPerNetwork: 1, Services: 1, EndpointsPerService: 100, PortsPerService: 100, GatewaysPerCluster: 2}},
	{"100000-endpoints", gen.Spec{Networks: 2, ClustersPerNetwork: 1, Services: 1, EndpointsPerService: 100_000, GatewaysPerCluster: 2}},
	{"10000-services", gen.Spec{Networks: 2, ClustersPerNetwork: 1, Services: 10_000, EndpointsPerService: 2, GatewaysPerCluster: 2}},
}

// sotwSize is the size of the state-of-the-world DiscoveryResponse that
// carries every resource of one type, as the server sends it.
func sotwSize(t testing.TB, typeURL string, res *xds.Resources) (total, largest int) {
	t.Helper()
	resp := &discoverypb.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: "0123456789abcdef0123456789abcdef", Nonce: "1"}
	for _, r := range res.ByType(typeURL) {
		a, err := anypb.New(r)
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, proto.Size(a))
		resp.Resources = append(resp.Resources, a)
	}
	return proto.Size(resp), largest
}

// knownOverLimit are the messages measured over 4 MiB (issue 20, item 5).
// The server splits endpoints and routes over several responses
// (--max-response-bytes), so for those types what counts is the largest
// single resource; listeners and clusters come whole in one SotW response.
// What stays over: one ClusterLoadAssignment of 100,000 endpoints (4.25 MB
// for a sidecar), the sidecar's one RouteConfiguration of 10,000 services,
// and the clusters and listeners of 10,000 services. The server sends them
// whole, logs and counts them (horizon_xds_oversize_responses_total); a
// grpc-go client with the default limit refuses them. The test requires them
// to stay over the limit, so that a fix must remove them from this list.
var knownOverLimit = map[string]bool{
	"100000-endpoints/sidecar/ClusterLoadAssignment": true,
	"10000-services/sidecar/Cluster":                 true,
	"10000-services/sidecar/RouteConfiguration":      true,
	"10000-services/proxyless/Cluster":               true,
	"10000-services/proxyless/Listener":              true,
}

// TestHugeResponsesFit renders each huge shape for every role and checks
// that every message the server sends fits grpc-go's default 4 MiB receive
// limit: no client is sent a message it must refuse. xds/server's
// TestLargeEDSIsSplit shows the split itself over a real stream.
func TestHugeResponsesFit(t *testing.T) {
	if testing.Short() {
		t.Skip("renders 100,000 endpoints")
	}
	for _, sh := range hugeShapes {
		cs, err := gen.Generate(sh.spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, role := range []xds.Role{xds.Sidecar, xds.Proxyless, xds.Gateway} {
			res, err := xds.Render(cs, view(role), xds.Policy{})
			if err != nil {
				t.Fatalf("%s/%s: %v", sh.name, role, err)
			}
			for _, typeURL := range xds.TypeURLs {
				total, largest := sotwSize(t, typeURL, res)
				name := sh.name + "/" + string(role) + "/" + typeURL[strings.LastIndex(typeURL, ".")+1:]
				t.Logf("%s: %d resources, response %d bytes, largest resource %d bytes", name, len(res.ByType(typeURL)), total, largest)
				message := total // the one response of a type sent whole
				if !cachev3.ResourceRequiresFullStateInSotw(typeURL) {
					message = largest + 1024 // split: the largest resource, with an envelope
				}
				switch over := message > grpcDefaultMaxRecv; {
				case over && !knownOverLimit[name]:
					t.Errorf("%s: a message of %d bytes, over grpc-go's default %d", name, message, grpcDefaultMaxRecv)
				case !over && knownOverLimit[name]:
					t.Errorf("%s: a message of %d bytes, within the limit now: remove it from knownOverLimit", name, message)
				}
			}
		}
	}
}

// heapOf is the live heap after a GC.
func heapOf() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMemoryLinear measures the heap a ClusterSet and one sidecar view's
// rendered resources hold per endpoint (10,000 and 100,000 endpoints in one
// service) and per service (1,000 and 10,000 services): memory grows
// linearly, so each figure stays within a factor of 1.5 between the two
// sizes (no time is measured).
func TestMemoryLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("renders 100,000 endpoints")
	}
	for _, dim := range []struct {
		unit  string
		sizes [2]int
		spec  func(n int) gen.Spec
	}{
		{"endpoint", [2]int{10_000, 100_000}, func(n int) gen.Spec {
			return gen.Spec{Networks: 2, ClustersPerNetwork: 1, Services: 1, EndpointsPerService: n, GatewaysPerCluster: 2}
		}},
		{"service", [2]int{1_000, 10_000}, func(n int) gen.Spec {
			return gen.Spec{Networks: 2, ClustersPerNetwork: 1, Services: n, EndpointsPerService: 2, GatewaysPerCluster: 2}
		}},
	} {
		var per [2]float64
		for i, n := range dim.sizes {
			before := heapOf()
			cs, err := gen.Generate(dim.spec(n))
			if err != nil {
				t.Fatal(err)
			}
			res, err := xds.Render(cs, view(xds.Sidecar), xds.Policy{})
			if err != nil {
				t.Fatal(err)
			}
			after := heapOf()
			runtime.KeepAlive(cs)
			runtime.KeepAlive(res)
			per[i] = float64(after-before) / float64(n)
			t.Logf("%d %ss: %d bytes of heap, %.0f bytes per %s", n, dim.unit, after-before, per[i], dim.unit)
		}
		if r := per[1] / per[0]; r > 1.5 || r < 1/1.5 {
			t.Errorf("heap per %s %.0f at %d and %.0f at %d: not linear", dim.unit, per[0], dim.sizes[0], per[1], dim.sizes[1])
		}
	}
}
