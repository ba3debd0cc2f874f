package ads

import (
	"reflect"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/horizonmesh/horizon/gateway/proxy/ads/adstest"
	"github.com/horizonmesh/horizon/gateway/proxy/sni"
)

func TestGatewayTable(t *testing.T) {
	noSNI := adstest.TCPProxyChain(t, "fallback")
	noSNI.FilterChainMatch = nil
	listeners := map[string]*listener.Listener{
		"gateway-15443": adstest.Listener(t, "gateway-15443",
			adstest.TCPProxyChain(t, adstest.SNIEcho, adstest.SNIEcho),
			adstest.TCPProxyChain(t, adstest.SNIAPI, strings.ToUpper(adstest.SNIAPI), "*.wild.example"),
			adstest.TCPProxyChain(t, "no-such-cluster", "missing.example"),
			adstest.TCPProxyChain(t, "all-unhealthy", "unhealthy.example"),
			adstest.TCPProxyChain(t, "static", "static.example"),
			adstest.TCPProxyChain(t, "eds-pending", "pending.example"),
			noSNI,
			&listener.FilterChain{FilterChainMatch: &listener.FilterChainMatch{ServerNames: []string{"no-tcp-proxy.example"}}},
		),
		// A later listener that disagrees on a name loses.
		"gateway-15444": adstest.Listener(t, "gateway-15444", adstest.TCPProxyChain(t, "static", adstest.SNIEcho)),
	}
	static := &clusterv3.Cluster{
		Name: "static", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: adstest.CLA("static", adstest.EP{Addr: "10.9.9.9:80"}),
	}
	clusters := map[string]*clusterv3.Cluster{
		adstest.SNIEcho: adstest.EDSCluster(adstest.SNIEcho, ""),
		adstest.SNIAPI:  adstest.EDSCluster(adstest.SNIAPI, "api-service"),
		"all-unhealthy": adstest.EDSCluster("all-unhealthy", ""),
		"static":        static,
		"eds-pending":   adstest.EDSCluster("eds-pending", ""),
	}
	assignments := map[string]*endpoint.ClusterLoadAssignment{
		adstest.SNIEcho: adstest.CLA(adstest.SNIEcho,
			adstest.EP{Addr: "10.0.0.1:8080", Health: core.HealthStatus_HEALTHY},
			adstest.EP{Addr: "10.0.0.2:8080"},
			adstest.EP{Addr: "10.0.0.2:8080"}, // duplicate
			adstest.EP{Addr: "10.0.0.3:8080", Health: core.HealthStatus_UNHEALTHY},
			adstest.EP{Addr: "10.0.0.4:8080", Health: core.HealthStatus_DRAINING},
			adstest.EP{Addr: "10.0.1.1:8080", Priority: 1},
		),
		// Priority 0 has nothing usable: priority 1 serves.
		"api-service": adstest.CLA("api-service",
			adstest.EP{Addr: "10.1.0.1:9090", Health: core.HealthStatus_UNHEALTHY},
			adstest.EP{Addr: "[fd00::1]:9090", Priority: 1},
		),
		"all-unhealthy": adstest.CLA("all-unhealthy", adstest.EP{Addr: "10.2.0.1:1", Health: core.HealthStatus_TIMEOUT}),
	}
	got := gatewayTable(listeners, clusters, assignments)
	want := sni.Table{
		adstest.SNIEcho:  {"10.0.0.1:8080", "10.0.0.2:8080"},
		adstest.SNIAPI:   {"[fd00::1]:9090"},
		"static.example": {"10.9.9.9:80"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("table:\n got %v\nwant %v", got, want)
	}
}

func TestListenerRoutesRejects(t *testing.T) {
	weighted := adstest.TCPProxyChain(t, "x", "x.example")
	weighted.Filters[0].ConfigType = &listener.Filter_TypedConfig{TypedConfig: adstest.Any(t, &tcpproxy.TcpProxy{
		StatPrefix: "x", ClusterSpecifier: &tcpproxy.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxy.TcpProxy_WeightedCluster{}},
	})}
	garbage := adstest.TCPProxyChain(t, "x", "x.example")
	garbage.Filters[0].GetTypedConfig().Value = []byte{0xff, 0xff, 0xff}
	tests := map[string]*listener.Listener{
		"weighted clusters": adstest.Listener(t, "l", weighted),
		"bad typed config":  adstest.Listener(t, "l", garbage),
		"name twice":        adstest.Listener(t, "l", adstest.TCPProxyChain(t, "a", "x.example"), adstest.TCPProxyChain(t, "b", "X.example")),
	}
	for name, l := range tests {
		t.Run(name, func(t *testing.T) {
			if routes, err := listenerRoutes(l); err == nil {
				t.Errorf("accepted: %v", routes)
			}
		})
	}
}
