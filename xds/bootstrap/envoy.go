package bootstrap

import (
	"cmp"
	"fmt"
	"net"
	"path/filepath"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/xds"
)

// XDSCluster is the static cluster through which Envoy reaches Horizon
// (ADS).
const XDSCluster = "xds-grpc"

// Receive limits of the xDS connection: the largest message a proxy's xDS
// client accepts from Horizon.
const (
	// DefaultEnvoyMaxReceiveBytes is the xDS connection's
	// GrpcService.EnvoyGrpc.max_receive_message_length in the Envoy
	// bootstraps Horizon writes (sidecar and gateway), unless
	// Server.MaxReceiveBytes says otherwise. Envoy's own default, 0, is
	// unlimited: a control plane's bug or a huge input would then make every
	// proxy buffer any message whole. 64 MiB is five times the largest
	// state-of-the-world message bench/huge_test.go renders (a sidecar's
	// clusters of 10,000 services, 12 MB), so such a view fits with room to
	// grow, while a runaway message is refused, the stream closed with
	// RESOURCE_EXHAUSTED
	// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/grpc_service.proto#envoy-v3-api-field-config-core-v3-grpcservice-envoygrpc-max-receive-message-length).
	DefaultEnvoyMaxReceiveBytes = 64 << 20
	// GRPCMaxReceiveBytes is what a proxyless client accepts: grpc-go's
	// default receive limit (defaultClientMaxReceiveMessageSize, 4 MiB, in
	// grpc-go's clientconn.go). Its xDS client does not change it: the
	// channel to the management server is made in
	// internal/xds/clients/grpctransport/grpc_transport.go (Builder.Build)
	// with keepalive, the bootstrap's channel credentials and a byte codec
	// only, and the grpc bootstrap has no field for it (grpc-go v1.85.0).
	GRPCMaxReceiveBytes = 4 << 20
)

// MaxReceiveBytes is the largest xDS message a proxy of role accepts from
// Horizon with the bootstrap Horizon writes by default.
func MaxReceiveBytes(role xds.Role) int {
	if role == xds.Proxyless {
		return GRPCMaxReceiveBytes
	}
	return DefaultEnvoyMaxReceiveBytes
}

// Keepalives of the xDS connection (cluster xds-grpc). Envoy keeps serving
// its last configuration when Horizon goes away, but it reconnects, to
// another replica, only once it notices: a Horizon that vanished without
// closing the connection (a lost node, a NAT or load balancer that dropped
// the flow) would otherwise hold an idle Envoy on a dead connection
// indefinitely. HTTP/2 PINGs find a dead peer within interval + timeout (plus
// Envoy's default 15% jitter); TCP keepalive covers the connection before its
// HTTP/2 layer is up. The PING interval stays at or above
// server.KeepaliveMinTime, the most Horizon's gRPC server accepts.
const (
	xdsKeepaliveInterval    = 30 * time.Second
	xdsKeepaliveTimeout     = 10 * time.Second
	xdsTCPKeepaliveTime     = 60 * time.Second
	xdsTCPKeepaliveInterval = 10 * time.Second
	xdsTCPKeepaliveProbes   = 3
)

// Envoy renders an Envoy bootstrap: ADS to Horizon for clusters and
// listeners, and the proxy's SVID and trust bundle as the secrets
// xds.SecretDefault and xds.SecretRootCA, either static secrets read from the
// agent's files (watched for the agent's atomic directory swap) or SDS from a
// SPIRE agent. On Horizon's mTLS port the xDS connection itself uses them.
// The xDS connection has keepalives and a receive limit
// (Server.MaxReceiveBytes, else DefaultEnvoyMaxReceiveBytes); stats carry tags for Horizon's cluster
// names (statsTags); admin listens on loopback only. A gateway's bootstrap
// adds its overload manager and readiness listener (GatewayLimits). The
// result passes the protos' validation rules, typed_configs included.
func Envoy(p Proxy, server Server, svids SVIDSource, adminPort uint32, gw GatewayLimits) (*bootstrapv3.Bootstrap, error) {
	meta, err := structpb.NewStruct(p.Metadata())
	if err != nil {
		return nil, err
	}
	grpcCluster := func(name string, discoveryType clusterv3.Cluster_DiscoveryType, addr *core.Address, h2 *core.Http2ProtocolOptions) (*clusterv3.Cluster, error) {
		opts, err := anypb.New(&httpopts.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: h2},
			}},
		})
		if err != nil {
			return nil, err
		}
		return &clusterv3.Cluster{
			Name:                          name,
			ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: discoveryType},
			ConnectTimeout:                durationpb.New(5e9),
			TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts},
			LoadAssignment: &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: addr}}}},
			}}},
		}, nil
	}
	xdsType := clusterv3.Cluster_STATIC
	if net.ParseIP(server.Host) == nil {
		xdsType = clusterv3.Cluster_STRICT_DNS
	}
	xdsGRPC, err := grpcCluster(XDSCluster, xdsType, &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address: server.Host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: server.Port},
	}}}, &core.Http2ProtocolOptions{ConnectionKeepalive: &core.KeepaliveSettings{
		Interval: durationpb.New(xdsKeepaliveInterval),
		Timeout:  durationpb.New(xdsKeepaliveTimeout),
	}})
	if err != nil {
		return nil, err
	}
	xdsGRPC.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &core.TcpKeepalive{
		KeepaliveTime:     wrapperspb.UInt32(uint32(xdsTCPKeepaliveTime / time.Second)),
		KeepaliveInterval: wrapperspb.UInt32(uint32(xdsTCPKeepaliveInterval / time.Second)),
		KeepaliveProbes:   wrapperspb.UInt32(xdsTCPKeepaliveProbes),
	}}
	if server.MTLS {
		tlsContext, err := anypb.New(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{xds.SecretRef(svids.Provider, xds.SecretDefault)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_URI,
						Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: server.ID.String()}},
					}}},
					ValidationContextSdsSecretConfig: xds.SecretRef(svids.Provider, xds.SecretRootCA),
				},
			},
			AlpnProtocols: []string{"h2"},
		}})
		if err != nil {
			return nil, err
		}
		xdsGRPC.TransportSocket = &core.TransportSocket{Name: wellknown.TransportSocketTLS, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: tlsContext}}
	}
	static := &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{xdsGRPC}}
	switch svids.Provider {
	case xds.SVIDFromSPIRE:
		sds, err := grpcCluster(xds.SDSCluster, clusterv3.Cluster_STATIC, &core.Address{Address: &core.Address_Pipe{Pipe: &core.Pipe{Path: svids.SDSSocket}}},
			&core.Http2ProtocolOptions{})
		if err != nil {
			return nil, err
		}
		static.Clusters = append(static.Clusters, sds)
	default:
		file := func(name string) *core.DataSource {
			return &core.DataSource{Specifier: &core.DataSource_Filename{Filename: filepath.Join(svids.CertDir, name)}}
		}
		// The agent replaces the files by swapping a ..data symlink in the
		// directory; Envoy rereads them when something moves into it.
		watched := &core.WatchedDirectory{Path: svids.CertDir}
		static.Secrets = []*tlsv3.Secret{
			{Name: xds.SecretDefault, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: file(certs.SVIDFile), PrivateKey: file(certs.SVIDKeyFile), WatchedDirectory: watched,
			}}},
			{Name: xds.SecretRootCA, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: file(certs.BundleFile), WatchedDirectory: watched,
			}}},
		}
	}
	ads := &core.ConfigSource{ResourceApiVersion: core.ApiVersion_V3, ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}}}
	b := &bootstrapv3.Bootstrap{
		Node: &core.Node{Id: p.ID, Cluster: p.Cluster, Metadata: meta, Locality: p.Locality()},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &core.ApiConfigSource{
				ApiType:                   core.ApiConfigSource_GRPC,
				TransportApiVersion:       core.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*core.GrpcService{{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &core.GrpcService_EnvoyGrpc{
						ClusterName:             XDSCluster,
						MaxReceiveMessageLength: wrapperspb.UInt32(cmp.Or(server.MaxReceiveBytes, DefaultEnvoyMaxReceiveBytes)),
					},
				}}},
			},
			CdsConfig: ads,
			LdsConfig: ads,
		},
		StaticResources: static,
		StatsConfig:     statsTags(),
		Admin: &bootstrapv3.Admin{Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: adminPort},
		}}}},
	}
	if xds.Role(p.Role) == xds.Gateway {
		if b.OverloadManager, err = gw.overloadManager(); err != nil {
			return nil, err
		}
		// The admin port (loopback) stays reachable at the connection
		// limit, for stats and /healthcheck/fail.
		b.Admin.IgnoreGlobalConnLimit = gw.MaxConnections > 0
		readiness, err := gw.readiness()
		if err != nil {
			return nil, err
		}
		if readiness != nil {
			static.Listeners = append(static.Listeners, readiness)
		}
	}
	if err := validateDeep(b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}
