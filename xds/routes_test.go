package xds

import (
	"slices"
	"testing"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/horizonmesh/horizon/gateway"
)

// virtualHost returns a view's virtual host of the given name.
func virtualHost(t *testing.T, r *Resources, rc, name string) *route.VirtualHost {
	t.Helper()
	for _, c := range r.Routes {
		if c.GetName() != rc {
			continue
		}
		for _, vh := range c.GetVirtualHosts() {
			if vh.GetName() == name {
				return vh
			}
		}
	}
	t.Fatalf("no virtual host %s in route configuration %s", name, rc)
	return nil
}

func routeNames(vh *route.VirtualHost) []string {
	var out []string
	for _, r := range vh.GetRoutes() {
		out = append(out, r.GetName())
	}
	return out
}

func addresses(cla *endpoint.ClusterLoadAssignment) map[string]uint32 {
	out := map[string]uint32{}
	for _, lle := range cla.GetEndpoints() {
		for _, lb := range lle.GetLbEndpoints() {
			out[lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] += lb.GetLoadBalancingWeight().GetValue()
		}
	}
	return out
}

// TestRoutesEnvoy checks the Envoy shape of testdata/policy/routes.yaml in a
// sidecar's view against Envoy's documented semantics:
//
//   - routes are tried in order and the first match is used
//     (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-field-config-route-v3-virtualhost-routes):
//     the rules keep the file's order, from: drops the rules that do not
//     select the view, and the route to the whole service comes last;
//   - weighted_clusters without total_weight splits by weight over the sum
//     of the weights
//     (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-msg-config-route-v3-weightedcluster):
//     the file's weights, adding up to 100;
//   - retry_policy: retry_on is a comma-separated list of conditions,
//     num_retries the retries after the first try, per_try_timeout each
//     try's (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-msg-config-route-v3-retrypolicy);
//     timeout bounds the whole request, retries included;
//   - request_headers_to_add with OVERWRITE_IF_EXISTS_OR_ADD sets a header,
//     request_headers_to_remove removes one.
//
// And split horizon for subsets: a subset's remote endpoints appear only as
// their network's gateways, weighted by the subset's endpoints behind them.
func TestRoutesEnvoy(t *testing.T) {
	cs, g, policy := loadCase(t, "testdata/golden/sidecar-east-1-routes.in.yaml")
	res, err := Render(cs, g, policy)
	if err != nil {
		t.Fatal(err)
	}
	vh := virtualHost(t, res, "8080", "echo.demo.svc.clusterset.local:8080")
	if got, want := routeNames(vh), []string{"testers", "geo-west", "from-east-1", "split", ""}; !slices.Equal(got, want) {
		t.Fatalf("routes in order %q, want %q", got, want)
	}
	testers := vh.GetRoutes()[0]
	if m := testers.GetMatch(); m.GetSafeRegex().GetRegex() != "/api/.*" || len(m.GetHeaders()) != 2 ||
		m.GetHeaders()[0].GetStringMatch().GetExact() != "tester" || !m.GetHeaders()[1].GetPresentMatch() {
		t.Errorf("testers match: %v", m)
	}
	a := testers.GetRoute()
	if a.GetCluster() != "outbound_.8080_.v2_.echo.demo.svc.clusterset.local" || a.GetTimeout().AsDuration().String() != "2s" {
		t.Errorf("testers action: %v", a)
	}
	if rp := a.GetRetryPolicy(); rp.GetRetryOn() != "5xx,unavailable" || rp.GetNumRetries().GetValue() != 2 || rp.GetPerTryTimeout().AsDuration().String() != "250ms" {
		t.Errorf("testers retry_policy: %v", rp)
	}
	if add := testers.GetRequestHeadersToAdd(); len(add) != 1 || add[0].GetHeader().GetKey() != "x-routed-by" || add[0].GetAppendAction().String() != "OVERWRITE_IF_EXISTS_OR_ADD" {
		t.Errorf("request_headers_to_add: %v", add)
	}
	if rm := testers.GetRequestHeadersToRemove(); !slices.Equal(rm, []string{"x-debug"}) {
		t.Errorf("request_headers_to_remove: %v", rm)
	}
	// A rule without retries has the host's (echo's: 1 on connect-failure);
	// attempts: 0 has none.
	if rp := vh.GetRoutes()[1].GetRoute().GetRetryPolicy(); rp.GetNumRetries().GetValue() != 1 || rp.GetRetryOn() != "connect-failure" {
		t.Errorf("geo-west retry_policy: %v, want the host's", rp)
	}
	if rp := vh.GetRoutes()[3].GetRoute().GetRetryPolicy(); rp != nil {
		t.Errorf("split retry_policy: %v, want none (attempts: 0)", rp)
	}
	split := vh.GetRoutes()[3].GetRoute().GetWeightedClusters()
	var sum uint32
	for _, c := range split.GetClusters() {
		sum += c.GetWeight().GetValue()
	}
	if len(split.GetClusters()) != 2 || sum != 100 || split.GetTotalWeight() != nil ||
		split.GetClusters()[0].GetName() != "outbound_.8080_.v1_.echo.demo.svc.clusterset.local" || split.GetClusters()[0].GetWeight().GetValue() != 70 {
		t.Errorf("split weighted_clusters: %v", split)
	}
	if last := vh.GetRoutes()[4]; last.GetRoute().GetCluster() != "outbound_.8080_._.echo.demo.svc.clusterset.local" {
		t.Errorf("last route: %v", last)
	}

	// Split horizon: v2 in west-1 is two pods behind two gateways, one each;
	// in east-1 one ready pod (10.0.1.2) and one not ready.
	v2 := addresses(assignment(t, res, "outbound_.8080_.v2.west-1_.echo.demo.svc.clusterset.local"))
	if want := map[string]uint32{"10.1.0.100": 1, "10.1.0.101": 1}; !mapsEqual(v2, want) {
		t.Errorf("v2 in west-1: %v, want %v", v2, want)
	}
	all := addresses(assignment(t, res, "outbound_.8080_.v2_.echo.demo.svc.clusterset.local"))
	for addr := range all {
		if addr[:5] == "10.1." && addr != "10.1.0.100" && addr != "10.1.0.101" {
			t.Errorf("v2: a pod address of network west, %s, in an east view", addr)
		}
	}
	if all["10.0.1.2"] == 0 || all["10.0.1.1"] != 0 {
		t.Errorf("v2: %v: want east-1's v2 pod and not its v1 pod", all)
	}

	// A proxy of another cluster does not get the from-east-1 rule; a proxy
	// outside us-east not the split either.
	west := g
	west.Cluster, west.Network, west.Locality.Region, west.Locality.Zone = "west-1", "west", "us-west", "us-west-2a"
	resW, err := Render(cs, west, policy)
	if err != nil {
		t.Fatal(err)
	}
	if got := routeNames(virtualHost(t, resW, "8080", "echo.demo.svc.clusterset.local:8080")); !slices.Equal(got, []string{"testers", "geo-west", ""}) {
		t.Errorf("west-1's routes %q", got)
	}
}

func mapsEqual(a, b map[string]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRoutesProxyless: grpc-go's subset of the same rules. grpc-go reads a
// route's deadline from max_stream_duration, not timeout; it applies
// retry_on's gRPC status codes only and has no per-try timeout; it does not
// rewrite headers (internal/xds/xdsclient/xdsresource/unmarshal_rds.go in
// grpc-go 1.85). What it does not do is noted.
func TestRoutesProxyless(t *testing.T) {
	cs, g, policy := loadCase(t, "testdata/golden/proxyless-east-1-routes.in.yaml")
	res, err := Render(cs, g, policy)
	if err != nil {
		t.Fatal(err)
	}
	vh := virtualHost(t, res, "echo.demo.svc.clusterset.local:8080", "echo.demo.svc.clusterset.local:8080")
	testers := vh.GetRoutes()[0].GetRoute()
	if testers.GetMaxStreamDuration().GetMaxStreamDuration().AsDuration().String() != "2s" || testers.GetRetryPolicy().GetRetryOn() != "unavailable" ||
		testers.GetRetryPolicy().GetPerTryTimeout() != nil || len(vh.GetRoutes()[0].GetRequestHeadersToAdd()) != 0 {
		t.Errorf("testers for proxyless: %v", vh.GetRoutes()[0])
	}
	if !slices.Contains(res.Notes, "echo.demo.svc.clusterset.local: route rule testers: proxyless gRPC does not rewrite request headers; its headers: add/remove are not applied") {
		t.Errorf("no note on header rewrites: %q", res.Notes)
	}
}

// TestRoutesGateway: a network's gateway routes each subset's SNI to that
// subset's endpoints in the network, and a cluster share's SNI to that
// cluster's alone; the names agree with the sidecar's clusters.
func TestRoutesGateway(t *testing.T) {
	cs, _, policy := loadCase(t, "testdata/golden/gateway-west-1-routes.in.yaml")
	r, err := gateway.Translate(cs, "west", gateway.Options{Subsets: policy.File.GatewaySubsets()})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]map[string]uint32{}
	for _, cla := range r.Endpoints {
		byName[cla.GetClusterName()] = addresses(cla)
	}
	for name, want := range map[string]map[string]uint32{
		"outbound_.8080_.v2_.echo.demo.svc.clusterset.local":         {"10.1.1.2": 1, "10.1.1.3": 1},
		"outbound_.8080_.v1_.echo.demo.svc.clusterset.local":         {"10.1.1.1": 1}, // 10.1.1.4 refuses mTLS
		"outbound_.8080_.v2.west-1_.echo.demo.svc.clusterset.local":  {"10.1.1.2": 1, "10.1.1.3": 1},
		"outbound_.8080_.all.west-1_.echo.demo.svc.clusterset.local": {"10.1.1.1": 1, "10.1.1.2": 1, "10.1.1.3": 1},
	} {
		if got := byName[name]; !mapsEqual(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if _, ok := byName["outbound_.8080_.v1.east-1_.echo.demo.svc.clusterset.local"]; ok {
		t.Error("west's gateway routes east-1's share")
	}
}
