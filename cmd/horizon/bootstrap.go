package main

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/xds"
)

// proxyIdentity is the node-metadata contract a bootstrap carries.
type proxyIdentity struct {
	id, role, cluster, network, namespace, serviceAccount string
	region, zone, subZone                                 string
	labels                                                labelFlags
}

// labelFlags is the repeatable --label k=v.
type labelFlags map[string]string

func (l *labelFlags) String() string { return fmt.Sprint(map[string]string(*l)) }

func (l *labelFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want key=value", v)
	}
	if *l == nil {
		*l = labelFlags{}
	}
	(*l)[k] = val
	return nil
}

func (p proxyIdentity) metadata() map[string]any {
	m := map[string]any{
		xds.MetaClusterID: p.cluster, xds.MetaRole: p.role,
		xds.MetaNamespace: p.namespace, xds.MetaServiceAccount: p.serviceAccount,
	}
	if p.network != "" {
		m[xds.MetaNetwork] = p.network
	}
	if len(p.labels) > 0 {
		labels := map[string]any{}
		for k, v := range p.labels {
			labels[k] = v
		}
		m[xds.MetaLabels] = labels
	}
	return m
}

// Environment variables the defaults of `horizon bootstrap` read. In
// Kubernetes the downward API sets them (fieldRef metadata.name,
// metadata.namespace, status.podIP; see examples/kubernetes).
const (
	envPodName      = "POD_NAME"
	envPodNamespace = "POD_NAMESPACE"
	envPodIP        = "POD_IP"
)

// host is what the defaults of a bootstrap read from where it is made.
type host struct {
	getenv   func(string) string
	hostname func() (string, error)
	random   io.Reader
}

var osHost = host{getenv: os.Getenv, hostname: os.Hostname, random: rand.Reader}

// defaultNodeID is the node id of a proxy whose bootstrap has no --id. It is
// unique per proxy, as Horizon's logs, debug pages and `horizon view` name a
// proxy by it:
//
//	<role>~<ip>~<name>.<namespace>~<cluster>
//
// This is Istio's form (sidecar~<pod IP>~<pod>.<ns>~<ns>.svc.cluster.local)
// with the member cluster as the last field, since a ClusterSet has the same
// namespace, and the same StatefulSet pod names, in many clusters. name is
// the pod's name (POD_NAME), unique in its namespace and cluster; ip is
// POD_IP, empty when unset. Without POD_NAME, name is the host name (HOSTNAME,
// else the kernel's) and a random suffix: every proxy on a VM, and every pod
// with hostNetwork on a node, shares its host name. Such an id changes each
// time the bootstrap is made; pass --id for a stable one.
func defaultNodeID(p proxyIdentity, h host) (string, error) {
	ip := h.getenv(envPodIP)
	if ip != "" && net.ParseIP(ip) == nil {
		return "", fmt.Errorf("%s=%q is not an IP address", envPodIP, ip)
	}
	name := h.getenv(envPodName)
	if name == "" {
		name = h.getenv("HOSTNAME")
		if name == "" {
			var err error
			if name, err = h.hostname(); err != nil {
				return "", fmt.Errorf("no --id, no %s and no host name: %w", envPodName, err)
			}
		}
		suffix := make([]byte, 4)
		if _, err := io.ReadFull(h.random, suffix); err != nil {
			return "", fmt.Errorf("node id suffix: %w", err)
		}
		name += "-" + hex.EncodeToString(suffix)
	}
	return p.role + "~" + ip + "~" + name + "." + p.namespace + "~" + p.cluster, nil
}

// Defaults of `horizon bootstrap`.
const (
	// defaultCertDir is where `horizon agent` writes a workload's SVID files.
	defaultCertDir = "/etc/horizon/certs"
	// defaultSDSSocket is the SPIRE agent's socket in SPIRE's Kubernetes
	// examples; its SDS server serves the SVID as "default" and the bundle
	// as "ROOTCA" (default_svid_name, default_bundle_name).
	defaultSDSSocket = "/run/spire/sockets/agent.sock"
	// certRefresh is how often grpc-go's file_watcher provider rereads the
	// certificate files.
	certRefresh = "60s"
)

// svidSource is where a proxy finds its SVID and trust bundle.
type svidSource struct {
	provider  xds.SVIDProvider
	certDir   string // SVIDFromAgent, and always for proxyless
	sdsSocket string // SVIDFromSPIRE
}

// xdsServer is the Horizon endpoint a bootstrap points at: the plaintext
// port, or the mutual-TLS port checked against Horizon's SPIFFE ID.
type xdsServer struct {
	host string
	port uint32
	mtls bool
	id   spiffeid.ID // with mtls
}

func bootstrap(args []string, stdout, stderr io.Writer) error {
	return bootstrapOn(osHost, args, stdout, stderr)
}

func bootstrapOn(h host, args []string, stdout, stderr io.Writer) error {
	var p proxyIdentity
	var xdsAddress, mtlsAddress, provider, trustDomain, serverID string
	var svids svidSource
	var adminPort int
	var outPath string
	var gw gatewayLimits
	var readinessPort int
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&p.role, "role", "sidecar", "sidecar or gateway (Envoy bootstrap), or proxyless (grpc-go bootstrap JSON)")
	fs.StringVar(&p.id, "id", "", "node id, unique per proxy (default <role>~$POD_IP~$POD_NAME.<namespace>~<cluster>; without POD_NAME, the host name and a random suffix)")
	fs.StringVar(&p.cluster, "cluster", "", "member cluster the proxy runs in (CLUSTER_ID, required)")
	fs.StringVar(&p.network, "network", "", "network the proxy is on (default: its cluster's)")
	fs.StringVar(&p.namespace, "namespace", "", "workload namespace (NAMESPACE; default $POD_NAMESPACE, else default)")
	fs.StringVar(&p.serviceAccount, "service-account", "default", "workload service account (SERVICE_ACCOUNT)")
	fs.StringVar(&p.region, "region", "", "locality region (default: its cluster's)")
	fs.StringVar(&p.zone, "zone", "", "locality zone")
	fs.StringVar(&p.subZone, "subzone", "", "locality sub-zone")
	fs.Var(&p.labels, "label", "a workload label, key=value (repeatable): node metadata LABELS, which a traffic policy's failoverPriority may rank on")
	fs.StringVar(&xdsAddress, "xds-address", "127.0.0.1:15010", "host:port of Horizon's plaintext xDS server (local development)")
	fs.StringVar(&mtlsAddress, "mtls-address", "", "host:port of Horizon's mutual-TLS xDS server (its port 15012); when set, Envoy connects there with its SVID instead of to --xds-address, and checks Horizon's SPIFFE ID (--xds-server-id). Envoy only")
	fs.StringVar(&trustDomain, "trust-domain", xds.DefaultTrustDomain.Name(), "SPIFFE trust domain of the mesh")
	fs.StringVar(&serverID, "xds-server-id", "", "SPIFFE ID Horizon's certificate must carry on --mtls-address (default spiffe://<trust-domain>/ns/horizon-system/sa/horizon)")
	fs.StringVar(&provider, "svid-provider", string(xds.SVIDFromAgent), "where Envoy gets its SVID and trust bundle: agent (files that `horizon agent` writes into --cert-dir, as static secrets) or spire (a SPIRE agent's SDS server on --sds-socket). Must match `horizon serve`'s setting. Proxyless gRPC always reads --cert-dir")
	fs.StringVar(&svids.certDir, "cert-dir", defaultCertDir, "directory holding "+certs.SVIDFile+", "+certs.SVIDKeyFile+" and "+certs.BundleFile+" (--svid-provider agent, and proxyless gRPC); watched for atomic replacement")
	fs.StringVar(&svids.sdsSocket, "sds-socket", defaultSDSSocket, "Unix socket of the SPIRE agent's SDS server (--svid-provider spire; Envoy only)")
	fs.IntVar(&adminPort, "admin-port", 15000, "Envoy admin port on 127.0.0.1")
	fs.Int64Var(&gw.maxConnections, "max-downstream-connections", defaultMaxDownstreamConnections, "gateway: cap on open downstream connections, all listeners together (the overload manager's downstream connections monitor); keep it under half the file descriptor limit; 0 for none")
	fs.Uint64Var(&gw.maxHeapBytes, "max-heap-bytes", 0, "gateway: heap Envoy may use, e.g. 80% of its container's memory limit; the overload manager then shrinks the heap at 95% and stops accepting connections at 98% (0: heap not watched)")
	fs.IntVar(&readinessPort, "readiness-port", defaultReadinessPort, "gateway: port of the readiness endpoint GET "+readinessPath+" on 0.0.0.0 (200 while Envoy is live, 503 while it drains); 0 for none")
	fs.StringVar(&outPath, "out", "", "write the bootstrap to this file (replaced atomically) instead of standard output, e.g. from an init container whose image has no shell")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if p.cluster == "" {
		return fmt.Errorf("bootstrap: --cluster is required")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := checkGatewayFlags(p.role, gw, readinessPort, uint32(adminPort), set); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	gw.readinessPort = uint32(readinessPort)
	var err error
	if svids.provider, err = xds.ParseSVIDProvider(provider); err != nil {
		return fmt.Errorf("bootstrap: --svid-provider: %w", err)
	}
	if !filepath.IsAbs(svids.certDir) {
		return fmt.Errorf("bootstrap: --cert-dir %q: want an absolute path", svids.certDir)
	}
	server, err := parseXDSServer(xdsAddress, mtlsAddress, trustDomain, serverID)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if p.namespace == "" {
		p.namespace = cmp.Or(h.getenv(envPodNamespace), "default")
	}
	if p.id == "" {
		if p.id, err = defaultNodeID(p, h); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	var doc []byte
	switch xds.Role(p.role) {
	case xds.Proxyless:
		if server.mtls {
			// grpc-go's "tls" channel credentials check the server's DNS
			// name, which an X509-SVID does not carry.
			return fmt.Errorf("bootstrap: --mtls-address: proxyless gRPC connects to --xds-address only")
		}
		if doc, err = grpcBootstrap(p, xdsAddress, svids.certDir); err != nil {
			return err
		}
	case xds.Sidecar, xds.Gateway:
		b, err := envoyBootstrap(p, server, svids, uint32(adminPort), gw)
		if err != nil {
			return err
		}
		if doc, err = (protojson.MarshalOptions{UseProtoNames: true}).Marshal(b); err != nil {
			return err
		}
	default:
		return fmt.Errorf("bootstrap: --role %q: want sidecar, gateway or proxyless", p.role)
	}
	if doc, err = canonicalJSON(doc); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if outPath == "" {
		_, err = stdout.Write(doc)
		return err
	}
	if err := writeFileAtomic(outPath, doc); err != nil {
		return fmt.Errorf("bootstrap: --out: %w", err)
	}
	return nil
}

// parseXDSServer picks the Horizon endpoint: the mTLS one when given.
func parseXDSServer(xdsAddress, mtlsAddress, trustDomain, serverID string) (xdsServer, error) {
	flagName, addr := "--xds-address", xdsAddress
	if mtlsAddress != "" {
		flagName, addr = "--mtls-address", mtlsAddress
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return xdsServer{}, fmt.Errorf("%s: %w", flagName, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 || host == "" {
		return xdsServer{}, fmt.Errorf("%s: bad address %q", flagName, addr)
	}
	s := xdsServer{host: host, port: uint32(port), mtls: mtlsAddress != ""}
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return xdsServer{}, fmt.Errorf("--trust-domain: %w", err)
	}
	if serverID == "" {
		s.id, err = spiffeid.FromSegments(td, "ns", "horizon-system", "sa", "horizon")
	} else {
		s.id, err = spiffeid.FromString(serverID)
	}
	if err != nil {
		return xdsServer{}, fmt.Errorf("--xds-server-id: %w", err)
	}
	if !s.id.MemberOf(td) {
		return xdsServer{}, fmt.Errorf("--xds-server-id %s is not in trust domain %s", s.id, td)
	}
	return s, nil
}

func (p proxyIdentity) locality() *core.Locality {
	if p.region == "" && p.zone == "" && p.subZone == "" {
		return nil
	}
	return &core.Locality{Region: p.region, Zone: p.zone, SubZone: p.subZone}
}

// grpcBootstrap renders grpc-go's xDS bootstrap (GRPC_XDS_BOOTSTRAP): the
// node, Horizon's address, the certificate provider instance that Horizon's
// TLS configuration names (grpc-go's file_watcher over the SVID files in
// certDir), and the name template of an xDS-enabled server's listener.
func grpcBootstrap(p proxyIdentity, xdsAddress, certDir string) ([]byte, error) {
	node := map[string]any{"id": p.id, "cluster": p.cluster, "metadata": p.metadata()}
	if l := p.locality(); l != nil {
		node["locality"] = map[string]string{"region": l.Region, "zone": l.Zone, "sub_zone": l.SubZone}
	}
	doc := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      xdsAddress,
			"channel_creds":   []any{map[string]string{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": node,
		"certificate_providers": map[string]any{
			xds.CertProviderInstance: map[string]any{
				"plugin_name": "file_watcher",
				"config": map[string]string{
					"certificate_file":    filepath.Join(certDir, certs.SVIDFile),
					"private_key_file":    filepath.Join(certDir, certs.SVIDKeyFile),
					"ca_certificate_file": filepath.Join(certDir, certs.BundleFile),
					"refresh_interval":    certRefresh,
				},
			},
		},
		"server_listener_resource_name_template": xds.ServerListenerPrefix + "%s",
	}
	return json.Marshal(doc)
}

// canonicalJSON re-encodes a JSON document in one canonical form: object
// keys sorted, two-space indentation, no HTML escaping, one trailing
// newline. The same document always gives the same bytes, whichever build of
// horizon prints it; protojson's own output does not, as it varies its
// whitespace from build to build on purpose. Numbers are copied as written.
func canonicalJSON(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("re-encode: %w", err)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("re-encode: %w", err)
	}
	return out.Bytes(), nil
}

// writeFileAtomic replaces path with data (mode 0644) by a rename, so a
// reader sees the old file or the new one, never a part.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

const (
	xdsCluster = "xds-grpc"
)

// Keepalives of the xDS connection (cluster xds-grpc). Envoy keeps serving
// its last configuration when Horizon goes away, but it reconnects, to
// another replica, only once it notices: a Horizon that vanished without
// closing the connection (a lost node, a NAT or load balancer that dropped
// the flow) would otherwise hold an idle Envoy on a dead connection
// indefinitely. HTTP/2 PINGs find a dead peer within interval + timeout (plus
// Envoy's default 15% jitter); TCP keepalive covers the connection before its
// HTTP/2 layer is up. The PING interval stays at or above
// xds.KeepaliveMinTime, the most Horizon's gRPC server accepts.
const (
	xdsKeepaliveInterval    = 30 * time.Second
	xdsKeepaliveTimeout     = 10 * time.Second
	xdsTCPKeepaliveTime     = 60 * time.Second
	xdsTCPKeepaliveInterval = 10 * time.Second
	xdsTCPKeepaliveProbes   = 3
)

// envoyBootstrap renders an Envoy bootstrap: ADS to Horizon for clusters and
// listeners, and the proxy's SVID and trust bundle as the secrets
// xds.SecretDefault and xds.SecretRootCA, either static secrets read from the
// agent's files (watched for the agent's atomic directory swap) or SDS from a
// SPIRE agent. On Horizon's mTLS port the xDS connection itself uses them.
// The xDS connection has keepalives; stats carry tags for Horizon's cluster
// names (statsTags); admin listens on loopback only. A gateway's bootstrap
// adds its overload manager and readiness listener (gatewayLimits). The
// result passes the protos' validation rules, typed_configs included.
func envoyBootstrap(p proxyIdentity, server xdsServer, svids svidSource, adminPort uint32, gw gatewayLimits) (*bootstrapv3.Bootstrap, error) {
	meta, err := structpb.NewStruct(p.metadata())
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
	if net.ParseIP(server.host) == nil {
		xdsType = clusterv3.Cluster_STRICT_DNS
	}
	xdsGRPC, err := grpcCluster(xdsCluster, xdsType, &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address: server.host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: server.port},
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
	if server.mtls {
		tlsContext, err := anypb.New(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{xds.SecretRef(svids.provider, xds.SecretDefault)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_URI,
						Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: server.id.String()}},
					}}},
					ValidationContextSdsSecretConfig: xds.SecretRef(svids.provider, xds.SecretRootCA),
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
	switch svids.provider {
	case xds.SVIDFromSPIRE:
		sds, err := grpcCluster(xds.SDSCluster, clusterv3.Cluster_STATIC, &core.Address{Address: &core.Address_Pipe{Pipe: &core.Pipe{Path: svids.sdsSocket}}},
			&core.Http2ProtocolOptions{})
		if err != nil {
			return nil, err
		}
		static.Clusters = append(static.Clusters, sds)
	default:
		file := func(name string) *core.DataSource {
			return &core.DataSource{Specifier: &core.DataSource_Filename{Filename: filepath.Join(svids.certDir, name)}}
		}
		// The agent replaces the files by swapping a ..data symlink in the
		// directory; Envoy rereads them when something moves into it.
		watched := &core.WatchedDirectory{Path: svids.certDir}
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
		Node: &core.Node{Id: p.id, Cluster: p.cluster, Metadata: meta, Locality: p.locality()},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &core.ApiConfigSource{
				ApiType:                   core.ApiConfigSource_GRPC,
				TransportApiVersion:       core.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*core.GrpcService{{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: xdsCluster},
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
	if xds.Role(p.role) == xds.Gateway {
		if b.OverloadManager, err = gw.overloadManager(); err != nil {
			return nil, err
		}
		// The admin port (loopback) stays reachable at the connection
		// limit, for stats and /healthcheck/fail.
		b.Admin.IgnoreGlobalConnLimit = gw.maxConnections > 0
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
