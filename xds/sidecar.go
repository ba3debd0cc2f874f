package xds

import (
	"net/netip"
	"strconv"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	origdst "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	rawbuffer "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/discovery"
)

// Names of the fixed parts of a sidecar's configuration.
const (
	// SecretDefault is the SDS name of the proxy's own SVID and key.
	SecretDefault = "default"
	// SecretRootCA is the SDS name of the trust bundle.
	SecretRootCA = "ROOTCA"
	// SDSCluster is the bootstrap cluster that serves SDS (a SPIRE agent's
	// socket) under SVIDFromSPIRE.
	SDSCluster = "sds-grpc"

	PassthroughCluster        = "PassthroughCluster"
	InboundPassthroughCluster = "InboundPassthroughCluster"
	VirtualOutbound           = "virtualOutbound"
	VirtualInbound            = "virtualInbound"
	OutboundPort              = 15001
	InboundPort               = 15006

	transportSocketMatchKey = "envoy.transport_socket_match"
	tlsModeKey              = "tlsMode"
	tlsModeMTLS             = "mtls"
)

// sidecar renders an Envoy sidecar's view: an EDS cluster per reachable host
// and port with mutual TLS to mesh endpoints, outbound HTTP routing by host per
// port, TCP listeners for services with a virtual IP, and a strict-mTLS
// inbound listener.
func (t *translator) sidecar() {
	hosts := t.services()
	httpPorts := map[uint32][]*hostPort{}
	for i := range hosts {
		h := &hosts[i]
		r := t.host(h, func(r *hostResult) {
			r.cluster = t.sidecarCluster(h)
			r.cla = t.loadAssignment(h)
			if !h.port.IsHTTP() && h.clusterIP != "" {
				r.listener = t.tcpListener(h)
			}
		})
		t.out.Clusters = append(t.out.Clusters, r.cluster)
		t.out.Endpoints = append(t.out.Endpoints, r.cla)
		switch {
		case h.port.IsHTTP():
			httpPorts[h.port.Port] = append(httpPorts[h.port.Port], h)
		case h.clusterIP != "":
			t.out.Listeners = append(t.out.Listeners, r.listener)
		default:
			t.notef("%s: TCP port without a virtual IP; reachable only through a headless address", h.name())
		}
	}
	for port, hs := range httpPorts {
		name := strconv.Itoa(int(port))
		r := t.port(port, hs, func(r *portResult) {
			r.listener = t.httpListener(port, name)
			r.route = t.routeConfig(name, port, hs)
		})
		t.out.Listeners = append(t.out.Listeners, r.listener)
		t.out.Routes = append(t.out.Routes, r.route)
	}
	t.out.Clusters = append(t.out.Clusters, t.passthroughCluster(PassthroughCluster, ""), t.passthroughCluster(InboundPassthroughCluster, "127.0.0.6"))
	t.out.Listeners = append(t.out.Listeners, t.outboundListener(), t.inboundListener())
}

var adsSource = &core.ConfigSource{
	ResourceApiVersion:    core.ApiVersion_V3,
	ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
}

var sdsSource = &core.ConfigSource{
	ResourceApiVersion: core.ApiVersion_V3,
	ConfigSourceSpecifier: &core.ConfigSource_ApiConfigSource{ApiConfigSource: &core.ApiConfigSource{
		ApiType:             core.ApiConfigSource_GRPC,
		TransportApiVersion: core.ApiVersion_V3,
		GrpcServices: []*core.GrpcService{{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: SDSCluster},
		}}},
	}},
}

// SecretRef references one of an Envoy proxy's secrets (SecretDefault,
// SecretRootCA): by name alone under SVIDFromAgent (Envoy then takes it from
// the bootstrap's static_resources.secrets), through SDS from SDSCluster
// under SVIDFromSPIRE. The bootstrap's own xDS cluster uses it too.
func SecretRef(provider SVIDProvider, name string) *tlsv3.SdsSecretConfig {
	if provider == SVIDFromSPIRE {
		return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: sdsSource}
	}
	return &tlsv3.SdsSecretConfig{Name: name}
}

func (t *translator) secret(name string) *tlsv3.SdsSecretConfig {
	return SecretRef(t.policy.svidProvider(), name)
}

func (t *translator) commonTLS(sans []*tlsv3.SubjectAltNameMatcher, alpn []string) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{t.secret(SecretDefault)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
				ValidationContextSdsSecretConfig: t.secret(SecretRootCA),
			},
		},
		AlpnProtocols: alpn,
	}
}

// peerSANs matches the given SPIFFE IDs exactly, or, with none, any ID of the
// trust domain.
func (t *translator) peerSANs(ids []string) []*tlsv3.SubjectAltNameMatcher {
	if len(ids) == 0 {
		return []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: t.policy.TrustDomainOrDefault().IDString() + "/"}},
		}}
	}
	out := make([]*tlsv3.SubjectAltNameMatcher, 0, len(ids))
	for _, id := range ids {
		out = append(out, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: id}},
		})
	}
	return out
}

func (t *translator) sidecarCluster(h *hostPort) *cluster.Cluster {
	name := h.name()
	set := t.policy.settings(h.key, h.scope)
	upstreamTLS := &tlsv3.UpstreamTlsContext{
		Sni:              name,
		CommonTlsContext: t.commonTLS(t.peerSANs(t.spiffeIDs(h)), nil),
	}
	c := &cluster.Cluster{
		Name:                 name,
		AltStatName:          name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource},
		ConnectTimeout:       durationpb.New(set.ConnectTimeout),
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
		CommonLbConfig:       commonLB(),
		OutlierDetection:     outlierDetection(set.OutlierDetection),
		// Mesh endpoints (tlsMode=mtls in their EDS metadata, or their
		// locality's: see hoistTLSMode) get mutual TLS with the
		// destination's SPIFFE IDs checked; the rest the cluster's plain
		// TCP. No catch-all match: it would match every endpoint's own
		// metadata before Envoy reads the locality's.
		TransportSocketMatches: []*cluster.Cluster_TransportSocketMatch{{
			Name:            "tlsMode-" + tlsModeMTLS,
			Match:           &structpb.Struct{Fields: map[string]*structpb.Value{tlsModeKey: structpb.NewStringValue(tlsModeMTLS)}},
			TransportSocket: typedSocket(wellknown.TransportSocketTLS, upstreamTLS),
		}},
		TransportSocket: typedSocket(wellknown.TransportSocketRawBuffer, &rawbuffer.RawBuffer{}),
	}
	if h.port.IsHTTP2() {
		c.TypedExtensionProtocolOptions = map[string]*anyMsg{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&httpopts.HttpProtocolOptions{
				UpstreamProtocolOptions: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &core.Http2ProtocolOptions{}},
				}},
			}),
		}
	}
	return c
}

func (t *translator) passthroughCluster(name, bindAddress string) *cluster.Cluster {
	c := &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST},
		ConnectTimeout:       durationpb.New(t.policy.defaultConnectTimeout()),
		LbPolicy:             cluster.Cluster_CLUSTER_PROVIDED,
	}
	if bindAddress != "" {
		// Inbound traffic leaves from a reserved address so that the
		// redirection rules do not capture it again.
		c.UpstreamBindConfig = &core.BindConfig{SourceAddress: &core.SocketAddress{
			Address: bindAddress, PortSpecifier: &core.SocketAddress_PortValue{PortValue: 0},
		}}
	}
	return c
}

func tcpProxyFilter(statPrefix, clusterName string) *listener.Filter {
	return &listener.Filter{
		Name: wellknown.TCPProxy,
		ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxy.TcpProxy{
			StatPrefix:       statPrefix,
			ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: clusterName},
		})},
	}
}

func (t *translator) tcpListener(h *hostPort) *listener.Listener {
	return &listener.Listener{
		Name:         h.clusterIP + "_" + strconv.Itoa(int(h.port.Port)),
		Address:      socketAddress(h.clusterIP, h.port.Port),
		BindToPort:   wrapperspb.Bool(false),
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{tcpProxyFilter(h.name(), h.name())}}},
	}
}

func (t *translator) httpListener(port uint32, routeName string) *listener.Listener {
	manager := &hcm.HttpConnectionManager{
		StatPrefix: "outbound_0.0.0.0_" + routeName,
		CodecType:  hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource: adsSource, RouteConfigName: routeName,
		}},
		HttpFilters: []*hcm.HttpFilter{routerFilter()},
	}
	return &listener.Listener{
		Name:       "0.0.0.0_" + routeName,
		Address:    socketAddress("0.0.0.0", port),
		BindToPort: wrapperspb.Bool(false),
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{
			Name: wellknown.HTTPConnectionManager, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(manager)},
		}}}},
	}
}

// routeConfig routes one port by host name: a virtual host per service host
// (with the short names a client in the same cluster may use), and
// everything else passed through.
func (t *translator) routeConfig(name string, port uint32, hosts []*hostPort) *route.RouteConfiguration {
	rc := &route.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false)}
	p := strconv.Itoa(int(port))
	for _, h := range hosts {
		domains := []string{h.host, h.host + ":" + p}
		if h.scope == discovery.ClusterLocal {
			short := h.key.Name + "." + h.key.Namespace
			domains = append(domains, short, short+":"+p, short+".svc", short+".svc:"+p)
		}
		if h.clusterIP != "" {
			ip := h.clusterIP
			if addr, err := netip.ParseAddr(ip); err == nil && addr.Is6() {
				ip = "[" + ip + "]"
			}
			domains = append(domains, ip, ip+":"+p)
		}
		rc.VirtualHosts = append(rc.VirtualHosts, &route.VirtualHost{
			Name:    h.host + ":" + p,
			Domains: domains,
			Routes:  []*route.Route{clusterRoute(h.name(), sidecarRetries(t.policy.settings(h.key, h.scope).Retries))},
		})
	}
	rc.VirtualHosts = append(rc.VirtualHosts, &route.VirtualHost{
		Name: "allow_any", Domains: []string{"*"}, Routes: []*route.Route{clusterRoute(PassthroughCluster, nil)},
	})
	return rc
}

// clusterRoute routes everything to one cluster, retried as retries says
// (nil: not retried).
func clusterRoute(clusterName string, retries *route.RetryPolicy) *route.Route {
	return &route.Route{
		Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
		Action: &route.Route_Route{Route: &route.RouteAction{
			ClusterSpecifier: &route.RouteAction_Cluster{Cluster: clusterName},
			Timeout:          durationpb.New(0),
			RetryPolicy:      retries,
		}},
	}
}

func (t *translator) outboundListener() *listener.Listener {
	return &listener.Listener{
		Name:           VirtualOutbound,
		Address:        socketAddress("0.0.0.0", OutboundPort),
		UseOriginalDst: wrapperspb.Bool(true),
		FilterChains: []*listener.FilterChain{{
			Name:    "passthrough",
			Filters: []*listener.Filter{tcpProxyFilter(PassthroughCluster, PassthroughCluster)},
		}},
	}
}

// inboundListener accepts only mutual TLS from the trust domain and hands the
// connection to the workload on its original destination.
func (t *translator) inboundListener() *listener.Listener {
	downstream := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext:         t.commonTLS(t.peerSANs(nil), nil),
	}
	return &listener.Listener{
		Name:    VirtualInbound,
		Address: socketAddress("0.0.0.0", InboundPort),
		ListenerFilters: []*listener.ListenerFilter{
			{Name: wellknown.OriginalDestination, ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&origdst.OriginalDst{})}},
			{Name: wellknown.TLSInspector, ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})}},
		},
		FilterChains: []*listener.FilterChain{{
			Name:             "inbound-mtls",
			FilterChainMatch: &listener.FilterChainMatch{TransportProtocol: "tls"},
			TransportSocket:  typedSocket(wellknown.TransportSocketTLS, downstream),
			Filters:          []*listener.Filter{tcpProxyFilter(InboundPassthroughCluster, InboundPassthroughCluster)},
		}},
	}
}
