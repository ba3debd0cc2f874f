package xds

import (
	"strconv"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// proxyless renders a grpc-go client's view, in the subset grpc-go accepts: a
// listener per dial target host:port whose api_listener points at a route
// configuration of the same name, and plain EDS clusters. grpc-go subscribes
// to listeners by name, so the view may hold more than any one client uses.
func (t *translator) proxyless() {
	for _, h := range t.services() {
		target := h.host + ":" + strconv.Itoa(int(h.port.Port))
		t.out.Listeners = append(t.out.Listeners, apiListener(target))
		t.out.Routes = append(t.out.Routes, &route.RouteConfiguration{
			Name: target,
			VirtualHosts: []*route.VirtualHost{{
				Name:    target,
				Domains: []string{target, h.host},
				Routes:  []*route.Route{clusterRoute(h.name())},
			}},
		})
		t.out.Clusters = append(t.out.Clusters, &cluster.Cluster{
			Name:                 h.name(),
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
			EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource},
			ConnectTimeout:       durationpb.New(t.policy.connectTimeout()),
			LbPolicy:             cluster.Cluster_ROUND_ROBIN,
		})
		t.out.Endpoints = append(t.out.Endpoints, t.loadAssignment(h.name(), h.port.Port, h.backends))
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

func routerFilter() *hcm.HttpFilter {
	return &hcm.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})},
	}
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
