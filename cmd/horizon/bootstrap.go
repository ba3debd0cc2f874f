package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/xds"
)

// proxyIdentity is the node-metadata contract a bootstrap carries.
type proxyIdentity struct {
	id, role, cluster, network, namespace, serviceAccount string
	region, zone, subZone                                 string
}

func (p proxyIdentity) metadata() map[string]string {
	m := map[string]string{
		xds.MetaClusterID: p.cluster, xds.MetaRole: p.role,
		xds.MetaNamespace: p.namespace, xds.MetaServiceAccount: p.serviceAccount,
	}
	if p.network != "" {
		m[xds.MetaNetwork] = p.network
	}
	return m
}

func bootstrap(args []string, stdout, stderr io.Writer) error {
	var p proxyIdentity
	var xdsAddress, sdsSocket string
	var adminPort int
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&p.role, "role", "sidecar", "sidecar or gateway (Envoy bootstrap), or proxyless (grpc-go bootstrap JSON)")
	fs.StringVar(&p.id, "id", "", "node id (default <role>~<namespace>~<hostname>)")
	fs.StringVar(&p.cluster, "cluster", "", "member cluster the proxy runs in (CLUSTER_ID, required)")
	fs.StringVar(&p.network, "network", "", "network the proxy is on (default: its cluster's)")
	fs.StringVar(&p.namespace, "namespace", "default", "workload namespace (NAMESPACE)")
	fs.StringVar(&p.serviceAccount, "service-account", "default", "workload service account (SERVICE_ACCOUNT)")
	fs.StringVar(&p.region, "region", "", "locality region (default: its cluster's)")
	fs.StringVar(&p.zone, "zone", "", "locality zone")
	fs.StringVar(&p.subZone, "subzone", "", "locality sub-zone")
	fs.StringVar(&xdsAddress, "xds-address", "127.0.0.1:15010", "host:port of Horizon's xDS server")
	fs.StringVar(&sdsSocket, "sds-socket", "/var/run/horizon/sds.sock", "Unix socket of the local SDS server (Envoy only)")
	fs.IntVar(&adminPort, "admin-port", 15000, "Envoy admin port on 127.0.0.1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if p.cluster == "" {
		return fmt.Errorf("bootstrap: --cluster is required")
	}
	host, portStr, err := net.SplitHostPort(xdsAddress)
	if err != nil {
		return fmt.Errorf("bootstrap: --xds-address: %w", err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return fmt.Errorf("bootstrap: --xds-address: bad port %q", portStr)
	}
	if p.id == "" {
		hn, _ := os.Hostname()
		p.id = p.role + "~" + p.namespace + "~" + hn
	}
	switch xds.Role(p.role) {
	case xds.Proxyless:
		out, err := grpcBootstrap(p, xdsAddress)
		if err != nil {
			return err
		}
		_, err = stdout.Write(out)
		return err
	case xds.Sidecar, xds.Gateway:
		b, err := envoyBootstrap(p, host, uint32(port), sdsSocket, uint32(adminPort))
		if err != nil {
			return err
		}
		out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(b)
		if err != nil {
			return err
		}
		_, err = stdout.Write(append(out, '\n'))
		return err
	}
	return fmt.Errorf("bootstrap: --role %q: want sidecar, gateway or proxyless", p.role)
}

func (p proxyIdentity) locality() *core.Locality {
	if p.region == "" && p.zone == "" && p.subZone == "" {
		return nil
	}
	return &core.Locality{Region: p.region, Zone: p.zone, SubZone: p.subZone}
}

// grpcBootstrap renders grpc-go's xDS bootstrap (GRPC_XDS_BOOTSTRAP).
func grpcBootstrap(p proxyIdentity, xdsAddress string) ([]byte, error) {
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
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

const (
	xdsCluster = "xds-grpc"
)

// envoyBootstrap renders an Envoy bootstrap: ADS to Horizon for clusters and
// listeners, and the local SDS server for the proxy's own certificate.
func envoyBootstrap(p proxyIdentity, xdsHost string, xdsPort uint32, sdsSocket string, adminPort uint32) (*bootstrapv3.Bootstrap, error) {
	md := map[string]any{}
	for k, v := range p.metadata() {
		md[k] = v
	}
	meta, err := structpb.NewStruct(md)
	if err != nil {
		return nil, err
	}
	h2, err := anypb.New(&httpopts.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &core.Http2ProtocolOptions{}},
		}},
	})
	if err != nil {
		return nil, err
	}
	grpcCluster := func(name string, discoveryType clusterv3.Cluster_DiscoveryType, addr *core.Address) *clusterv3.Cluster {
		return &clusterv3.Cluster{
			Name:                          name,
			ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: discoveryType},
			ConnectTimeout:                durationpb.New(5e9),
			TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2},
			LoadAssignment: &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: addr}}}},
			}}},
		}
	}
	xdsType := clusterv3.Cluster_STATIC
	if net.ParseIP(xdsHost) == nil {
		xdsType = clusterv3.Cluster_STRICT_DNS
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
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{
			grpcCluster(xdsCluster, xdsType, &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
				Address: xdsHost, PortSpecifier: &core.SocketAddress_PortValue{PortValue: xdsPort},
			}}}),
			grpcCluster(xds.SDSCluster, clusterv3.Cluster_STATIC, &core.Address{Address: &core.Address_Pipe{Pipe: &core.Pipe{Path: sdsSocket}}}),
		}},
		Admin: &bootstrapv3.Admin{Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: adminPort},
		}}}},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}
