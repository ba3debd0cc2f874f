package bootstrap

import (
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	healthcheck "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	downstreamcx "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	fixedheap "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
)

func monitors(b *bootstrapv3.Bootstrap) map[string]*overloadv3.ResourceMonitor {
	m := map[string]*overloadv3.ResourceMonitor{}
	for _, rm := range b.GetOverloadManager().GetResourceMonitors() {
		m[rm.GetName()] = rm
	}
	return m
}

func staticListener(b *bootstrapv3.Bootstrap, name string) *listenerv3.Listener {
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() == name {
			return l
		}
	}
	return nil
}

// TestGatewayBootstrapOverload: a gateway caps its downstream connections
// with the overload manager's downstream connections monitor, which needs no
// action: "the resource monitor configuration by itself serves to limit
// incoming connections"
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/operations/overload_manager/overload_manager#limiting-active-connections;
// DownstreamConnectionsConfig:
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/resource_monitors/downstream_connections/v3/downstream_connections.proto).
// With a known heap size it also watches the heap (fixed_heap) and, as
// Envoy's edge guidance does, shrinks the heap at 95% and stops taking
// connections at 98% (https://www.envoyproxy.io/docs/envoy/latest/configuration/best_practices/edge,
// overload actions: .../overload_manager#overload-actions).
func TestGatewayBootstrapOverload(t *testing.T) {
	b := envoyOf(t, config("gateway"))
	rm := monitors(b)[downstreamConnectionsMonitor]
	var cx downstreamcx.DownstreamConnectionsConfig
	if rm == nil || rm.GetTypedConfig().UnmarshalTo(&cx) != nil || cx.GetMaxActiveDownstreamConnections() != DefaultMaxDownstreamConnections {
		t.Fatalf("monitor %s: %v, want max_active_downstream_connections %d", downstreamConnectionsMonitor, rm, DefaultMaxDownstreamConnections)
	}
	if len(monitors(b)) != 1 || len(b.GetOverloadManager().GetActions()) != 0 {
		t.Errorf("without --max-heap-bytes: %v, want the connection monitor alone", b.GetOverloadManager())
	}
	// The admin port stays reachable at the limit (it is on loopback).
	if !b.GetAdmin().GetIgnoreGlobalConnLimit() {
		t.Error("admin counts against the connection limit")
	}

	cfg := config("gateway")
	cfg.Gateway.MaxConnections, cfg.Gateway.MaxHeapBytes = 1000, 1073741824
	b = envoyOf(t, cfg)
	if err := monitors(b)[downstreamConnectionsMonitor].GetTypedConfig().UnmarshalTo(&cx); err != nil || cx.GetMaxActiveDownstreamConnections() != 1000 {
		t.Errorf("--max-downstream-connections 1000: %v %v", &cx, err)
	}
	var heap fixedheap.FixedHeapConfig
	if rm := monitors(b)[fixedHeapMonitor]; rm == nil || rm.GetTypedConfig().UnmarshalTo(&heap) != nil || heap.GetMaxHeapSizeBytes() != 1<<30 {
		t.Errorf("monitor %s: %v, want max_heap_size_bytes 1 GiB", fixedHeapMonitor, rm)
	}
	actions := map[string]float64{}
	for _, a := range b.GetOverloadManager().GetActions() {
		for _, tr := range a.GetTriggers() {
			if monitors(b)[tr.GetName()] == nil {
				t.Errorf("action %s: trigger %s names no configured monitor", a.GetName(), tr.GetName())
			}
			actions[a.GetName()] = tr.GetThreshold().GetValue()
		}
	}
	if actions["envoy.overload_actions.shrink_heap"] != 0.95 || actions["envoy.overload_actions.stop_accepting_connections"] != 0.98 || len(actions) != 2 {
		t.Errorf("actions %v, want shrink_heap at 0.95 and stop_accepting_connections at 0.98", actions)
	}

	// 0 turns the connection limit off; nothing then needs an overload manager.
	cfg = config("gateway")
	cfg.Gateway.MaxConnections = 0
	if b := envoyOf(t, cfg); b.GetOverloadManager() != nil || b.GetAdmin().GetIgnoreGlobalConnLimit() {
		t.Errorf("--max-downstream-connections 0: overload manager %v", b.GetOverloadManager())
	}
	// A sidecar's bootstrap has none of it.
	if b := envoyOf(t, config("sidecar")); b.GetOverloadManager() != nil || len(b.GetStaticResources().GetListeners()) != 0 {
		t.Errorf("sidecar: overload manager %v, listeners %v", b.GetOverloadManager(), b.GetStaticResources().GetListeners())
	}
}

// TestGatewayBootstrapReadiness: a gateway answers load balancers' and
// kubelets' probes on a static listener (0.0.0.0:15021, GET /healthz/ready,
// Istio's port and path) with Envoy's health_check filter, not passing
// through: "Envoy will respond with a 200 or a 503 depending on the current
// draining state of the server"
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/health_checking#http-health-checking-filter),
// and 503 once the admin endpoint /healthcheck/fail has been called
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/health_check_filter).
// The listener opts out of the global connection limit, so a gateway at its
// limit still answers ("You may want to opt out a listener to be able to
// probe Envoy ... while it is otherwise at its connection limit", overload
// manager docs above), and bounds its buffers like the gateway listener.
func TestGatewayBootstrapReadiness(t *testing.T) {
	b := envoyOf(t, config("gateway"))
	l := staticListener(b, readinessListener)
	if l == nil {
		t.Fatalf("no static listener %q", readinessListener)
	}
	sa := l.GetAddress().GetSocketAddress()
	if sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != 15021 {
		t.Errorf("readiness listener on %s:%d, want 0.0.0.0:15021", sa.GetAddress(), sa.GetPortValue())
	}
	if !l.GetIgnoreGlobalConnLimit() || l.GetPerConnectionBufferLimitBytes().GetValue() != 32<<10 {
		t.Errorf("readiness listener: ignore_global_conn_limit %v, buffer limit %v", l.GetIgnoreGlobalConnLimit(), l.GetPerConnectionBufferLimitBytes())
	}
	if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
		t.Fatalf("readiness listener filter chains %v", l.GetFilterChains())
	}
	var m hcm.HttpConnectionManager
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&m); err != nil {
		t.Fatal(err)
	}
	filters := m.GetHttpFilters()
	if len(filters) != 2 || filters[0].GetName() != "envoy.filters.http.health_check" || filters[1].GetName() != "envoy.filters.http.router" {
		t.Fatalf("HTTP filters %v, want health_check then router", filters)
	}
	var hc healthcheck.HealthCheck
	if err := filters[0].GetTypedConfig().UnmarshalTo(&hc); err != nil {
		t.Fatal(err)
	}
	if hc.GetPassThroughMode() == nil || hc.GetPassThroughMode().GetValue() {
		t.Errorf("pass_through_mode %v, want false: Envoy answers for itself", hc.GetPassThroughMode())
	}
	if h := hc.GetHeaders(); len(h) != 1 || h[0].GetName() != ":path" || h[0].GetStringMatch().GetExact() != "/healthz/ready" {
		t.Errorf("health check matches %v, want :path exactly /healthz/ready", h)
	}

	cfg := config("gateway")
	cfg.Gateway.ReadinessPort = 8021
	if b := envoyOf(t, cfg); staticListener(b, readinessListener).GetAddress().GetSocketAddress().GetPortValue() != 8021 {
		t.Error("readiness port 8021 ignored")
	}
	cfg.Gateway.ReadinessPort = 0
	if b := envoyOf(t, cfg); staticListener(b, readinessListener) != nil {
		t.Error("readiness port 0 still has a readiness listener")
	}
}
