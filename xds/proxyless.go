package xds

import (
	"net"
	"slices"
	"strconv"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfig "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/discovery"
)

// Names of the fixed parts of a proxyless node's configuration.
const (
	// CertProviderInstance is the certificate provider instance (in the grpc
	// bootstrap's certificate_providers) that holds a proxyless node's SVID
	// and trust bundle.
	CertProviderInstance = "default"
	// ServerListenerPrefix starts the name of the listener an xDS-enabled
	// gRPC server asks for; the rest is its listening address, host:port as
	// Go prints it. The grpc bootstrap's server_listener_resource_name_template
	// is ServerListenerPrefix + "%s".
	ServerListenerPrefix = "grpc/server?xds.resource.listening_address="
)

// ServerListenerName is the name of the listener of a gRPC server listening
// on host and port.
func ServerListenerName(host string, port uint32) string {
	return ServerListenerPrefix + net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// proxyless renders a grpc-go node's view, in the subset grpc-go accepts.
//
// As a client: a listener per dial target host:port whose api_listener points
// at a route configuration of the same name, and EDS clusters; a cluster
// backed by mesh workloads (tlsMode=mtls) carries mutual TLS from the
// certificate provider instance CertProviderInstance, checking the
// destination's SPIFFE IDs (grpc-go has neither SDS nor
// transport_socket_matches, so the choice is per cluster).
//
// As a server: a listener per address a mesh workload of the view's cluster
// serves on (see serverListeners). grpc-go subscribes to listeners by name
// and the cache answers per name, so the view may hold more than any one node
// uses.
func (t *translator) proxyless() {
	hosts := t.services()
	t.expectHosts(len(hosts))
	t.routedHosts(hosts) // routes.go
	for _, h := range hosts {
		r := t.host(h, func(r *hostResult) { t.proxylessHost(h, r) })
		t.out.Listeners = append(t.out.Listeners, r.listener)
		t.out.Listeners = append(t.out.Listeners, r.aliasListeners...)
		t.out.Routes = append(t.out.Routes, r.route)
		t.out.Clusters = append(t.out.Clusters, r.cluster)
		t.out.Endpoints = append(t.out.Endpoints, r.cla)
	}
	t.subsetResources(t.proxylessCluster)
	t.proxylessExternals()
	t.out.Listeners = append(t.out.Listeners, t.serverListeners()...)
}

// proxylessHost renders a proxyless client's listener, route, cluster and
// assignment for one host and port.
func (t *translator) proxylessHost(h *hostPort, r *hostResult) {
	target := net.JoinHostPort(h.host, strconv.Itoa(int(h.port.Port)))
	set := t.settings(h)
	r.listener = apiListener(target)
	routes := []*route.Route{clusterRoute(h.name(), t.proxylessRetries(h, set.Retries))}
	if t.routed(h) {
		routes = t.ruleRoutes(h, routes[0], true) // routes.go
	}
	r.route = &route.RouteConfiguration{
		Name: target,
		VirtualHosts: []*route.VirtualHost{{
			Name:    target,
			Domains: appendAliasDomains([]string{target, h.host}, h.aliases, strconv.Itoa(int(h.port.Port))),
			Routes:  routes,
		}},
	}
	r.aliasListeners = aliasListeners(h, target)
	r.cla = t.loadAssignment(h)
	r.cluster = t.proxylessCluster(h)
}

// proxylessCluster is a proxyless client's EDS cluster of a host and port
// (or of a subset of it: routes.go).
func (t *translator) proxylessCluster(h *hostPort) *cluster.Cluster {
	set := t.settings(h)
	c := &cluster.Cluster{
		Name:                 h.name(),
		ClusterDiscoveryType: edsClusterType,
		EdsClusterConfig:     edsClusterConfig,
		ConnectTimeout:       t.parts.duration(set.ConnectTimeout),
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
		CommonLbConfig:       commonLBConfig,
	}
	if set.OutlierDetection != nil {
		t.notef("%s: outlier detection is not sent to proxyless gRPC: grpc-go implements only success-rate and failure-percentage ejection, not consecutive errors", h.host)
	}
	if meshBacked(h) {
		c.TransportSocket = typedSocket(wellknown.TransportSocketTLS, t.proxylessUpstreamTLS(h))
		if n := t.plaintextEndpoints(h); n > 0 {
			t.notef("%s: %d endpoints without mutual TLS share a cluster with mesh workloads; a proxyless client's TLS handshake with them fails", h.name(), n)
		}
	}
	return c
}

// meshBacked reports whether any endpoint behind a host and port is a mesh
// workload, which accepts only mutual TLS.
func meshBacked(h *hostPort) bool {
	for _, b := range h.backends {
		if slices.ContainsFunc(b.svc.Endpoints, func(e discovery.Endpoint) bool { return e.MTLS }) {
			return true
		}
	}
	return false
}

// plaintextEndpoints counts the usable endpoints behind a host and port on
// the view's own network without tlsMode=mtls. Those of other networks are
// reached through their gateway, and only mesh workloads cross networks.
func (t *translator) plaintextEndpoints(h *hostPort) int {
	n := 0
	for _, b := range h.backends {
		if b.cluster.Network != t.group.Network {
			continue
		}
		for i := range b.svc.Endpoints {
			if e := &b.svc.Endpoints[i]; e.Usable() && !e.MTLS {
				n++
			}
		}
	}
	return n
}

// proxylessTLS is the part of a proxyless node's TLS configuration common to
// both directions: its SVID and the trust bundle, from certificate provider
// instances. sans is grpc-go's form of the peer check (it reads
// match_subject_alt_names, not the typed matchers); a server takes none and
// checks its peers with RBAC instead.
func proxylessTLS(sans []*matcher.StringMatcher) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertProviderInstance},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertProviderInstance},
			MatchSubjectAltNames:          sans,
		}},
	}
}

// proxylessUpstreamTLS is mutual TLS to a host and port: the server must
// present one of the SPIFFE IDs of its service accounts (any ID of the trust
// domain when none is known). The SNI is the cluster name, which east-west
// gateways route by (grpc-go sends it with GRPC_EXPERIMENTAL_XDS_SNI=true).
func (t *translator) proxylessUpstreamTLS(h *hostPort) *tlsv3.UpstreamTlsContext {
	var sans []*matcher.StringMatcher
	for _, m := range t.peerSANs(t.spiffeIDs(h)) {
		sans = append(sans, m.GetMatcher())
	}
	return &tlsv3.UpstreamTlsContext{Sni: h.name(), CommonTlsContext: proxylessTLS(sans)}
}

// serverListeners renders the listeners xDS-enabled gRPC servers of the view's
// cluster ask for. A server names its listener after its listening address
// (ServerListenerName), and a view is shared by every proxyless node of a
// cluster, network and locality, so the view holds one for each target port
// of the mesh endpoints of the cluster's own services (ready or not: a server
// needs its listener before it can become ready) on the unspecified
// addresses 0.0.0.0 and [::], where servers listen (":port"). Their number
// grows with the ports served, not with the pods; a server bound to one
// address gets no listener and serves without xDS security.
func (t *translator) serverListeners() []*listener.Listener {
	own, _ := t.cs.Cluster(t.group.Cluster)
	addrs := map[string]*core.SocketAddress{}
	add := func(host string, port uint32) {
		name := ServerListenerName(host, port)
		if _, ok := addrs[name]; !ok {
			addrs[name] = &core.SocketAddress{Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port}}
		}
	}
	for i := range own.Services {
		s := &own.Services[i]
		for _, p := range s.Ports {
			if p.Protocol != "" && p.Protocol != "TCP" {
				continue
			}
			for j := range s.Endpoints {
				e := &s.Endpoints[j]
				if !e.MTLS {
					continue
				}
				tp := e.TargetPort(p)
				add("0.0.0.0", tp)
				add("::", tp)
			}
		}
	}
	var out []*listener.Listener
	for name, sa := range addrs {
		out = append(out, t.serverListener(name, sa.GetAddress(), sa.GetPortValue()))
	}
	return out
}

// serverListener accepts only mutual TLS, and then only RPCs from peers whose
// SPIFFE ID is in the trust domain.
func (t *translator) serverListener(name, host string, port uint32) *listener.Listener {
	downstream := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext:         proxylessTLS(nil),
	}
	manager := &hcm.HttpConnectionManager{
		StatPrefix: name,
		CodecType:  hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
			Name: "inbound",
			VirtualHosts: []*route.VirtualHost{{
				Name:    "inbound",
				Domains: []string{"*"},
				Routes: []*route.Route{{
					Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
					Action: &route.Route_NonForwardingAction{NonForwardingAction: &route.NonForwardingAction{}},
				}},
			}},
		}},
		HttpFilters: []*hcm.HttpFilter{t.trustDomainRBAC(), routerFilter()},
	}
	return &listener.Listener{
		Name:    name,
		Address: socketAddress(host, port),
		FilterChains: []*listener.FilterChain{{
			Name:            "inbound-mtls",
			TransportSocket: typedSocket(wellknown.TransportSocketTLS, downstream),
			Filters: []*listener.Filter{{
				Name: wellknown.HTTPConnectionManager, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(manager)},
			}},
		}},
	}
}

// trustDomainRBAC allows peers whose authenticated principal (the URI SAN of
// their certificate) is in the trust domain, and denies the rest.
func (t *translator) trustDomainRBAC() *hcm.HttpFilter {
	policy := &rbacconfig.Policy{
		Permissions: []*rbacconfig.Permission{{Rule: &rbacconfig.Permission_Any{Any: true}}},
		Principals: []*rbacconfig.Principal{{Identifier: &rbacconfig.Principal_Authenticated_{Authenticated: &rbacconfig.Principal_Authenticated{
			PrincipalName: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: t.policy.TrustDomainOrDefault().IDString() + "/"}},
		}}}},
	}
	return &hcm.HttpFilter{
		Name: wellknown.HTTPRoleBasedAccessControl,
		ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&rbac.RBAC{Rules: &rbacconfig.RBAC{
			Action:   rbacconfig.RBAC_ALLOW,
			Policies: map[string]*rbacconfig.Policy{"trust-domain": policy},
		}})},
	}
}

func apiListener(target string) *listener.Listener {
	manager := &hcm.HttpConnectionManager{
		StatPrefix: target,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource: adsSource, RouteConfigName: target,
		}},
		HttpFilters: []*hcm.HttpFilter{routerFilter()},
	}
	return &listener.Listener{
		Name:        target,
		ApiListener: &listener.ApiListener{ApiListener: mustAny(manager)},
	}
}

// routerFilter is the router HTTP filter, shared (parts.go).
func routerFilter() *hcm.HttpFilter { return routerHTTPFilter }

var routerHTTPFilter = &hcm.HttpFilter{
	Name:       wellknown.Router,
	ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})},
}

type anyMsg = anypb.Any

// mustAny wraps a message Horizon itself built; marshalling a well-formed
// message cannot fail, and Translate's callers validate every resource.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic("xds: marshal " + string(proto.MessageName(m)) + ": " + err.Error())
	}
	return a
}

func typedSocket(name string, m proto.Message) *core.TransportSocket {
	return &core.TransportSocket{Name: name, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(m)}}
}
