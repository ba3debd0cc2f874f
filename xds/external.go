package xds

import (
	"net"
	"strconv"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/discovery"
)

// External services (discovery/external.go) in a view.
//
// A sidecar gets, per port of every external service its network reaches,
// a cluster of the service's resolution with its endpoints inline
// (load_assignment), as Envoy's STATIC, STRICT_DNS and LOGICAL_DNS clusters
// take them:
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery
// with an UpstreamTlsContext when the service originates TLS and
// health_checks when it is health-checked. An HTTP port is routed by host
// name like a service's (a virtual host of the port's route
// configuration); a TCP port gets a listener on the service's address when
// it has one.
//
// A proxyless gRPC client gets what grpc-go supports: an EDS cluster whose
// assignment Horizon fills, with the service's IP addresses, or the
// addresses Horizon resolved for its DNS names (ExternalService.Resolved);
// no TLS origination and no health checks (the view's notes say so).
//
// A view on a network the service does not list in networks gets nothing of
// it, and a note says why: no route is rendered, so its requests fail (or
// go out through the passthrough cluster, where the network allows it) —
// the network has no path to the host, and Horizon does not pretend one.

// externalLocality is the locality of external endpoints in a proxyless
// client's assignment: outside every member cluster.
var externalLocality = &core.Locality{Region: "external"}

// externalPort is one port of an external service a view reaches.
type externalPort struct {
	hostPort
	ext *discovery.ExternalService
}

// externals returns every port of every external service the view's
// network reaches, and notes the services it does not.
func (t *translator) externals() []*externalPort {
	var out []*externalPort
	for i := range t.cs.External {
		e := &t.cs.External[i]
		if !e.ReachableFrom(t.group.Network) {
			t.notef("external service %s: not reachable from network %s (only from %s); no route rendered", e.Host, t.group.Network, strings.Join(e.Networks, ", "))
			continue
		}
		for _, p := range e.Ports {
			x := &externalPort{ext: e}
			x.host, x.cluster = e.Host, discovery.ClusterName(e.Host, p.Port)
			x.scope, x.port, x.clusterIP = discovery.ClusterSetWide, p, e.Address
			out = append(out, x)
		}
	}
	return out
}

// externalPortOf returns an endpoint's port for service port p.
func externalPortOf(ep discovery.ExternalEndpoint, p discovery.Port) uint32 {
	if ep.Port != 0 {
		return ep.Port
	}
	return p.Port
}

// externalCluster is a sidecar's cluster of an external service's port.
func (t *translator) externalCluster(x *externalPort) *cluster.Cluster {
	e := x.ext
	types := map[discovery.Resolution]cluster.Cluster_DiscoveryType{
		discovery.ResolveStatic:     cluster.Cluster_STATIC,
		discovery.ResolveStrictDNS:  cluster.Cluster_STRICT_DNS,
		discovery.ResolveLogicalDNS: cluster.Cluster_LOGICAL_DNS,
	}
	lle := &endpoint.LocalityLbEndpoints{}
	for _, ep := range e.Endpoints {
		lle.LbEndpoints = append(lle.LbEndpoints, &endpoint.LbEndpoint{HostIdentifier: &endpoint.LbEndpoint_Endpoint{
			Endpoint: &endpoint.Endpoint{Address: socketAddress(ep.Address, externalPortOf(ep, x.port))},
		}})
	}
	c := &cluster.Cluster{
		Name:                 x.name(),
		AltStatName:          x.name(),
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: types[e.Resolution]},
		ConnectTimeout:       durationpb.New(t.policy.defaultConnectTimeout()),
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
		LoadAssignment:       &endpoint.ClusterLoadAssignment{ClusterName: x.name(), Endpoints: []*endpoint.LocalityLbEndpoints{lle}},
	}
	if e.TLS != nil {
		c.TransportSocket = typedSocket(wellknown.TransportSocketTLS, externalTLS(e.TLS))
	}
	if e.HealthCheck != nil {
		c.HealthChecks = []*core.HealthCheck{healthCheck(e.HealthCheck, e.Host)}
	}
	if x.port.IsHTTP2() {
		c.TypedExtensionProtocolOptions = http2Options
	}
	return c
}

// externalTLS is TLS originated to an external service: its SNI, and the
// server's certificate checked against the CA file and, by name, against
// the subject alt names (the SNI when none are given).
func externalTLS(x *discovery.ExternalTLS) *tlsv3.UpstreamTlsContext {
	names := x.SubjectAltNames
	if len(names) == 0 {
		names = []string{x.SNI}
	}
	var sans []*tlsv3.SubjectAltNameMatcher
	for _, n := range names {
		sans = append(sans, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_DNS,
			Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: n}},
		})
	}
	return &tlsv3.UpstreamTlsContext{
		Sni: x.SNI,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 &core.DataSource{Specifier: &core.DataSource_Filename{Filename: x.CAFile}},
				MatchTypedSubjectAltNames: sans,
			}},
		},
	}
}

// healthCheck is an Envoy active health check:
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/health_check.proto
// An HTTP check sends GET path with the service's host as Host, and is
// healthy on 200; a TCP check only connects (an empty send and receive).
func healthCheck(hc *discovery.HealthCheck, host string) *core.HealthCheck {
	out := &core.HealthCheck{
		Timeout:            durationpb.New(hc.Timeout),
		Interval:           durationpb.New(hc.Interval),
		HealthyThreshold:   wrapperspb.UInt32(hc.HealthyThreshold),
		UnhealthyThreshold: wrapperspb.UInt32(hc.UnhealthyThreshold),
	}
	if hc.Protocol == discovery.HealthCheckHTTP {
		out.HealthChecker = &core.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &core.HealthCheck_HttpHealthCheck{Host: host, Path: hc.Path}}
	} else {
		out.HealthChecker = &core.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &core.HealthCheck_TcpHealthCheck{}}
	}
	return out
}

// sidecarExternals adds a sidecar's clusters and TCP listeners of external
// services, and returns their HTTP ports for the route configurations.
func (t *translator) sidecarExternals(httpPorts map[uint32][]*hostPort) {
	for _, x := range t.externals() {
		t.out.Clusters = append(t.out.Clusters, t.externalCluster(x))
		switch {
		case x.port.IsHTTP():
			httpPorts[x.port.Port] = append(httpPorts[x.port.Port], &x.hostPort)
		case x.clusterIP != "":
			t.out.Listeners = append(t.out.Listeners, t.tcpListener(&x.hostPort))
		default:
			t.notef("external service %s port %d: TCP without an address; reached only through the passthrough cluster, without TLS origination or health checks", x.host, x.port.Port)
		}
	}
}

// proxylessExternals adds a proxyless client's listener, route, cluster
// and assignment for every port of the external services it reaches.
func (t *translator) proxylessExternals() {
	for _, x := range t.externals() {
		e := x.ext
		target := net.JoinHostPort(x.host, strconv.Itoa(int(x.port.Port)))
		t.out.Listeners = append(t.out.Listeners, apiListener(target))
		t.out.Routes = append(t.out.Routes, &route.RouteConfiguration{
			Name: target,
			VirtualHosts: []*route.VirtualHost{{
				Name: target, Domains: []string{target, x.host},
				Routes: []*route.Route{clusterRoute(x.name(), nil)},
			}},
		})
		t.out.Clusters = append(t.out.Clusters, &cluster.Cluster{
			Name:                 x.name(),
			ClusterDiscoveryType: edsClusterType,
			EdsClusterConfig:     edsClusterConfig,
			ConnectTimeout:       durationpb.New(t.policy.defaultConnectTimeout()),
			LbPolicy:             cluster.Cluster_ROUND_ROBIN,
			CommonLbConfig:       commonLBConfig,
		})
		t.out.Endpoints = append(t.out.Endpoints, t.externalAssignment(x))
		if e.TLS != nil {
			t.notef("external service %s: TLS origination is not sent to proxyless gRPC (grpc-go takes TLS only from certificate providers); the client's own channel credentials apply", e.Host)
		}
		if e.HealthCheck != nil {
			t.notef("external service %s: active health checks are not sent to proxyless gRPC (grpc-go has none)", e.Host)
		}
		if e.Resolution != discovery.ResolveStatic {
			t.notef("external service %s: %s is resolved by Horizon for proxyless gRPC (grpc-go has no STRICT_DNS cluster) and served as EDS endpoints", e.Host, e.Resolution)
		}
	}
}

// externalAssignment is the assignment of an external service's port for a
// proxyless client: every IP address, or every address resolved for every
// DNS name, with the endpoint's port.
func (t *translator) externalAssignment(x *externalPort) *endpoint.ClusterLoadAssignment {
	e := x.ext
	// grpc-go refuses an assignment with a locality without an ID
	// (xdsresource's EDS parser: "a locality without ID").
	lle := &endpoint.LocalityLbEndpoints{Locality: externalLocality}
	seen := map[string]bool{}
	add := func(addr string, port uint32) {
		key := net.JoinHostPort(addr, strconv.Itoa(int(port)))
		if seen[key] {
			return
		}
		seen[key] = true
		lle.LbEndpoints = append(lle.LbEndpoints, &endpoint.LbEndpoint{
			HostIdentifier:      &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(addr, port)}},
			LoadBalancingWeight: wrapperspb.UInt32(1),
		})
	}
	for _, ep := range e.Endpoints {
		port := externalPortOf(ep, x.port)
		if e.Resolution == discovery.ResolveStatic {
			add(ep.Address, port)
			continue
		}
		addrs, ok := e.Resolved[ep.Address]
		switch why, failed := e.ResolveErrors[ep.Address]; {
		case failed && ok:
			t.notef("external service %s: resolving %s failed (%s); proxyless clients keep its last good addresses", e.Host, ep.Address, why)
		case failed:
			t.notef("external service %s: resolving %s failed (%s); proxyless clients get no address for it", e.Host, ep.Address, why)
		case !ok:
			t.notef("external service %s: %s not resolved yet; proxyless clients get no address for it", e.Host, ep.Address)
		}
		for _, a := range addrs {
			add(a, port)
		}
	}
	cla := &endpoint.ClusterLoadAssignment{ClusterName: x.name()}
	if n := len(lle.LbEndpoints); n > 0 {
		lle.LoadBalancingWeight = wrapperspb.UInt32(uint32(n))
		cla.Endpoints = []*endpoint.LocalityLbEndpoints{lle}
	}
	return cla
}
