package xds

import (
	"net/netip"
	"strconv"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	origdst "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
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
	t.expectHosts(len(hosts))
	t.routedHosts(hosts) // routes.go
	t.out.Clusters = make([]*cluster.Cluster, 0, len(hosts)+2)
	t.out.Endpoints = make([]*endpoint.ClusterLoadAssignment, 0, len(hosts))
	httpPorts := map[uint32][]*hostPort{}
	for _, h := range hosts {
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
	t.sidecarExternals(httpPorts)
	for port, hs := range httpPorts {
		name := strconv.Itoa(int(port))
		build := func(r *portResult) {
			r.listener = t.httpListener(port, name)
			r.route = t.routeConfig(name, port, hs)
		}
		r := t.port(port, hs, build)
		t.out.Listeners = append(t.out.Listeners, r.listener)
		t.out.Routes = append(t.out.Routes, r.route)
	}
	t.subsetResources(t.sidecarCluster)
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
	return t.parts.secret(t.policy.svidProvider(), name)
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
		if t.parts.sanDomain == nil {
			t.parts.sanDomain = []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_URI,
				Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: t.policy.TrustDomainOrDefault().IDString() + "/"}},
			}}
		}
		return t.parts.sanDomain
	}
	out := make([]*tlsv3.SubjectAltNameMatcher, 0, len(ids))
	for _, id := range ids {
		out = append(out, t.parts.sanExactMatcher(id))
	}
	return out
}

// upstreamCommonTLS returns the marshalled common_tls_context of a
// sidecar's upstream TLS to a host whose servers present the given SPIFFE
// IDs: proto.Marshal(t.commonTLS(t.peerSANs(ids), nil)), encoded from the
// IDs and the marshalled secrets (appendCommonTLS), once per render for
// each list of IDs (a service's cluster.local and clusterset.local hosts
// share it).
func (t *translator) upstreamCommonTLS(ids []string) []byte {
	key := ""
	switch len(ids) {
	case 0:
	case 1:
		key = ids[0]
	default:
		key = strings.Join(ids, "\n") // a SPIFFE ID has no newline
	}
	if b, ok := t.parts.commonTLS[key]; ok {
		return b
	}
	if t.parts.secretBytes[0] == nil {
		t.parts.secretBytes = [2][]byte{mustMarshal(t.secret(SecretDefault)), mustMarshal(t.secret(SecretRootCA))}
		t.parts.anyIDBytes = mustMarshal(t.peerSANs(nil)[0])
	}
	b := appendCommonTLS(nil, t.parts.secretBytes[0], t.parts.secretBytes[1], ids, t.parts.anyIDBytes)
	if t.parts.commonTLS == nil {
		t.parts.commonTLS = map[string][]byte{}
	}
	t.parts.commonTLS[key] = b
	return b
}

// sidecarClusterParts is a sidecar's EDS cluster with the messages only it
// holds, allocated together (the shared ones are in parts.go).
type sidecarClusterParts struct {
	cluster cluster.Cluster
	matches [1]*cluster.Cluster_TransportSocketMatch
	mtls    cluster.Cluster_TransportSocketMatch
	socket  core.TransportSocket
	typed   core.TransportSocket_TypedConfig
	config  anypb.Any
}

// sidecarCluster is the EDS cluster of a host and port. Its upstream TLS
// context is encoded directly (appendUpstreamTLS): the shared
// common_tls_context of the host's SPIFFE IDs with the cluster's SNI.
func (t *translator) sidecarCluster(h *hostPort) *cluster.Cluster {
	name := h.name()
	set := t.settings(h)
	commonTLS := t.upstreamCommonTLS(t.spiffeIDs(h))
	p := &sidecarClusterParts{}
	p.config.TypeUrl = upstreamTLSType
	p.config.Value = appendUpstreamTLS(make([]byte, 0, upstreamTLSSize(commonTLS, name)), commonTLS, name)
	p.typed.TypedConfig = &p.config
	p.socket.Name = wellknown.TransportSocketTLS
	p.socket.ConfigType = &p.typed
	// Mesh endpoints (tlsMode=mtls in their EDS metadata, or their
	// locality's: see hoistTLSMode) get mutual TLS with the destination's
	// SPIFFE IDs checked; the rest the cluster's plain TCP. No catch-all
	// match: it would match every endpoint's own metadata before Envoy
	// reads the locality's.
	p.mtls.Name = "tlsMode-" + tlsModeMTLS
	p.mtls.Match = mtlsMatch
	p.mtls.TransportSocket = &p.socket
	p.matches = [1]*cluster.Cluster_TransportSocketMatch{&p.mtls}
	c := &p.cluster
	c.Name = name
	c.AltStatName = name
	c.ClusterDiscoveryType = edsClusterType
	c.EdsClusterConfig = edsClusterConfig
	c.ConnectTimeout = t.parts.duration(set.ConnectTimeout)
	c.LbPolicy = cluster.Cluster_ROUND_ROBIN
	c.CommonLbConfig = commonLBConfig
	c.OutlierDetection = t.parts.outlierDetection(set.OutlierDetection)
	c.TransportSocketMatches = p.matches[:]
	c.TransportSocket = plainTCPSocket
	if h.port.IsHTTP2() {
		c.TypedExtensionProtocolOptions = http2Options
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
	rc := &route.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false), VirtualHosts: make([]*route.VirtualHost, 0, len(hosts)+1)}
	p := strconv.Itoa(int(port))
	vhosts := make([]virtualHostParts, len(hosts)) // allocated together
	for i, h := range hosts {
		vp := &vhosts[i]
		domains := vp.domains(h, p)
		vp.vhost.Name = domains[1] // host:port
		vp.vhost.Domains = domains
		vp.routes[0] = vp.route.fill(h.name(), t.parts.sidecarRetries(t.settings(h).Retries))
		vp.vhost.Routes = vp.routes[:]
		if t.routed(h) {
			vp.vhost.Routes = t.ruleRoutes(h, vp.routes[0], false)
		}
		rc.VirtualHosts = append(rc.VirtualHosts, &vp.vhost)
	}
	rc.VirtualHosts = append(rc.VirtualHosts, &route.VirtualHost{
		Name: "allow_any", Domains: []string{"*"}, Routes: []*route.Route{clusterRoute(PassthroughCluster, nil)},
	})
	return rc
}

// virtualHostParts is a virtual host of routeConfig with the messages and
// strings only it holds.
type virtualHostParts struct {
	vhost      route.VirtualHost
	routes     [1]*route.Route
	route      routeParts
	domainList [8]string
}

// domains returns the names a host is reached by on port p: its host name,
// the short names a client in the same cluster may use (cluster.local
// only), its virtual IP, each alone and with the port, then its aliases
// (aliases.go). They are cut out of one string.
func (vp *virtualHostParts) domains(h *hostPort, p string) []string {
	short := ""
	if h.scope == discovery.ClusterLocal {
		short = h.key.Name + "." + h.key.Namespace
	}
	ip := h.clusterIP
	if ip != "" {
		if addr, err := netip.ParseAddr(ip); err == nil && addr.Is6() {
			ip = "[" + ip + "]"
		}
	}
	var b strings.Builder
	b.Grow(2*len(h.host) + 4*len(short) + len(".svc")*2 + 2*len(ip) + 4*(1+len(p)))
	var ends [len(vp.domainList)]int
	n := 0
	add := func(name, suffix string, withPort bool) {
		b.WriteString(name)
		b.WriteString(suffix)
		if withPort {
			b.WriteByte(':')
			b.WriteString(p)
		}
		ends[n] = b.Len()
		n++
	}
	add(h.host, "", false)
	add(h.host, "", true)
	if short != "" {
		add(short, "", false)
		add(short, "", true)
		add(short, ".svc", false)
		add(short, ".svc", true)
	}
	if ip != "" {
		add(ip, "", false)
		add(ip, "", true)
	}
	all := b.String()
	for i := range n {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		vp.domainList[i] = all[start:ends[i]]
	}
	if len(h.aliases) > 0 {
		return appendAliasDomains(vp.domainList[:n:n], h.aliases, p)
	}
	return vp.domainList[:n:n]
}

// routeParts is a route to one cluster with the messages only it holds,
// allocated together.
type routeParts struct {
	route   route.Route
	action  route.Route_Route
	target  route.RouteAction
	cluster route.RouteAction_Cluster
}

// fill makes rp the route of everything to one cluster, retried as retries
// says (nil: not retried), and returns it.
func (rp *routeParts) fill(clusterName string, retries *route.RetryPolicy) *route.Route {
	rp.cluster.Cluster = clusterName
	rp.target.ClusterSpecifier = &rp.cluster
	rp.target.Timeout = zeroDuration
	rp.target.RetryPolicy = retries
	rp.action.Route = &rp.target
	rp.route.Match = prefixRoot
	rp.route.Action = &rp.action
	return &rp.route
}

// clusterRoute routes everything to one cluster, retried as retries says
// (nil: not retried).
func clusterRoute(clusterName string, retries *route.RetryPolicy) *route.Route {
	return new(routeParts).fill(clusterName, retries)
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
