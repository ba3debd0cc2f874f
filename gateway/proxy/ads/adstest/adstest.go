// Package adstest builds, by hand, the xDS resources Horizon serves a
// gateway node (a listener whose filter chains pass server names to
// tcp_proxy clusters, EDS clusters, their assignments), for the tests of the
// Go gateway's ADS client (gateway/proxy/ads) and of `horizon gateway`.
// They are written independently of gateway.Translate on purpose: they are
// the contract as the client reads it.
package adstest

import (
	"net"
	"strconv"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Any packs m, failing the test if it cannot.
func Any(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TCPProxyChain is a filter chain that passes the server names to a
// tcp_proxy to cluster.
func TCPProxyChain(t testing.TB, cluster string, names ...string) *listener.FilterChain {
	return &listener.FilterChain{
		FilterChainMatch: &listener.FilterChainMatch{ServerNames: names},
		Filters: []*listener.Filter{{
			Name: wellknown.TCPProxy,
			ConfigType: &listener.Filter_TypedConfig{TypedConfig: Any(t, &tcpproxy.TcpProxy{
				StatPrefix: cluster, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: cluster},
			})},
		}},
	}
}

// Listener is a gateway listener on 0.0.0.0:15443 with a TLS inspector and
// the chains.
func Listener(t testing.TB, name string, chains ...*listener.FilterChain) *listener.Listener {
	return &listener.Listener{
		Name: name,
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &core.SocketAddress_PortValue{PortValue: 15443},
		}}},
		ListenerFilters: []*listener.ListenerFilter{{
			Name:       wellknown.TLSInspector,
			ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: Any(t, &tlsinspector.TlsInspector{})},
		}},
		FilterChains: chains,
	}
}

// EDSCluster is a cluster whose endpoints come over ADS, under serviceName
// when it is not empty.
func EDSCluster(name, serviceName string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: serviceName,
			EdsConfig:   &core.ConfigSource{ConfigSourceSpecifier: &core.ConfigSource_Ads{}, ResourceApiVersion: core.ApiVersion_V3},
		},
	}
}

// EP is one endpoint of an assignment: its address (host:port), priority
// and health.
type EP struct {
	Addr     string
	Priority uint32
	Health   core.HealthStatus
}

// CLA is the assignment of name: one locality per priority the endpoints
// use, each weighted 1.
func CLA(name string, eps ...EP) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	byPriority := map[uint32]*endpoint.LocalityLbEndpoints{}
	for _, e := range eps {
		le := byPriority[e.Priority]
		if le == nil {
			le = &endpoint.LocalityLbEndpoints{
				Locality: &core.Locality{Region: "r", Zone: "z" + strconv.Itoa(int(e.Priority))}, Priority: e.Priority,
				LoadBalancingWeight: wrapperspb.UInt32(1),
			}
			byPriority[e.Priority] = le
			cla.Endpoints = append(cla.Endpoints, le)
		}
		host, port, _ := net.SplitHostPort(e.Addr)
		p, _ := strconv.Atoi(port)
		le.LbEndpoints = append(le.LbEndpoints, &endpoint.LbEndpoint{
			HealthStatus: e.Health,
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: &core.Address{
				Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(p)}}},
			}}},
		})
	}
	return cla
}

// Server names of two service ports, as discovery.ClusterName spells them.
const (
	SNIEcho = "outbound_.8080_._.echo.demo.svc.clusterset.local"
	SNIAPI  = "outbound_.9090_._.api.demo.svc.clusterset.local"
)
