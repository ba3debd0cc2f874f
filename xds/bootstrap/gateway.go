package bootstrap

import (
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	healthcheck "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	downstreamcx "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	fixedheap "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/gateway"
)

// What an east-west gateway's Envoy bootstrap adds to a sidecar's: limits,
// since the gateway takes connections from other networks, and a readiness
// endpoint for the load balancer in front of it and the kubelet. The
// gateway's listener and clusters themselves come over xDS
// (gateway.Translate), with per-connection buffer limits of their own.
const (
	// DefaultMaxDownstreamConnections is the gateway's default cap on open
	// downstream connections, all listeners together (Envoy Gateway's
	// default too). Envoy's advice is to keep it under half the process's
	// file descriptor limit, which upstream connections share.
	DefaultMaxDownstreamConnections = 50000
	// DefaultReadinessPort and ReadinessPath are Istio's: load balancer
	// health checks written for Istio gateways work unchanged.
	DefaultReadinessPort = 15021
	ReadinessPath        = "/healthz/ready"
	readinessListener    = "readiness"

	downstreamConnectionsMonitor = "envoy.resource_monitors.global_downstream_max_connections"
	fixedHeapMonitor             = "envoy.resource_monitors.fixed_heap"
)

// GatewayLimits are the settings of a gateway bootstrap (its flags).
type GatewayLimits struct {
	// MaxConnections caps open downstream connections; 0 sets no cap.
	MaxConnections int64
	// MaxHeapBytes is the heap the gateway may use, e.g. most of its
	// container's memory limit; 0 means unknown, and no heap monitor.
	MaxHeapBytes uint64
	// ReadinessPort serves ReadinessPath; 0 means no readiness listener.
	ReadinessPort uint32
}

// overloadManager caps downstream connections with the downstream
// connections monitor, which enforces its limit by itself, with no overload
// action ("Limiting Active Connections",
// https://www.envoyproxy.io/docs/envoy/latest/configuration/operations/overload_manager/overload_manager).
// With a known heap size it adds the fixed_heap monitor and Envoy's edge
// guidance for it (https://www.envoyproxy.io/docs/envoy/latest/configuration/best_practices/edge):
// shrink the heap at 95%; at 98% stop accepting connections, the TCP
// counterpart of the guidance's stop_accepting_requests, as the gateway
// proxies TCP. It returns nil when there is nothing to watch.
func (g GatewayLimits) overloadManager() (*overloadv3.OverloadManager, error) {
	om := &overloadv3.OverloadManager{RefreshInterval: durationpb.New(250 * time.Millisecond)}
	if g.MaxConnections > 0 {
		cfg, err := anypb.New(&downstreamcx.DownstreamConnectionsConfig{MaxActiveDownstreamConnections: g.MaxConnections})
		if err != nil {
			return nil, err
		}
		om.ResourceMonitors = append(om.ResourceMonitors, &overloadv3.ResourceMonitor{
			Name: downstreamConnectionsMonitor, ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: cfg},
		})
	}
	if g.MaxHeapBytes > 0 {
		cfg, err := anypb.New(&fixedheap.FixedHeapConfig{MaxHeapSizeBytes: g.MaxHeapBytes})
		if err != nil {
			return nil, err
		}
		om.ResourceMonitors = append(om.ResourceMonitors, &overloadv3.ResourceMonitor{
			Name: fixedHeapMonitor, ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: cfg},
		})
		action := func(name string, threshold float64) *overloadv3.OverloadAction {
			return &overloadv3.OverloadAction{Name: name, Triggers: []*overloadv3.Trigger{{
				Name:         fixedHeapMonitor,
				TriggerOneof: &overloadv3.Trigger_Threshold{Threshold: &overloadv3.ThresholdTrigger{Value: threshold}},
			}}}
		}
		om.Actions = append(om.Actions,
			action("envoy.overload_actions.shrink_heap", 0.95),
			action("envoy.overload_actions.stop_accepting_connections", 0.98))
	}
	if len(om.ResourceMonitors) == 0 {
		return nil, nil
	}
	return om, nil
}

// readiness is the static listener that answers GET ReadinessPath on
// 0.0.0.0:readinessPort, for load balancers and probes. Envoy's health_check
// filter answers it, not passing through: 200, or 503 while the server
// drains or after the admin endpoint /healthcheck/fail
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/health_checking#http-health-checking-filter).
// Envoy starts taking connections on its listeners only once it has
// initialized (its first clusters and listeners from Horizon, or
// initial_fetch_timeout), so the endpoint fails before that too. Any other
// request gets 404. The listener is left out of the global connection limit
// so that a gateway at its limit still answers, and bounds its buffers like
// the gateway listener.
func (g GatewayLimits) readiness() (*listenerv3.Listener, error) {
	if g.ReadinessPort == 0 {
		return nil, nil
	}
	hc, err := anypb.New(&healthcheck.HealthCheck{
		PassThroughMode: wrapperspb.Bool(false),
		Headers: []*routev3.HeaderMatcher{{
			Name:                 ":path",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: ReadinessPath}}},
		}},
	})
	if err != nil {
		return nil, err
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	manager, err := anypb.New(&hcm.HttpConnectionManager{
		StatPrefix: readinessListener,
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:         readinessListener,
			VirtualHosts: []*routev3.VirtualHost{{Name: readinessListener, Domains: []string{"*"}}},
		}},
		HttpFilters: []*hcm.HttpFilter{
			{Name: wellknown.HealthCheck, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: hc}},
			{Name: wellknown.Router, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: router}},
		},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name: readinessListener,
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &core.SocketAddress_PortValue{PortValue: g.ReadinessPort},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: manager},
		}}}},
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(gateway.DefaultBufferLimitBytes),
		IgnoreGlobalConnLimit:         true,
	}, nil
}
