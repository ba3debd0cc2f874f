package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/gateway/sni"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// The contract Horizon serves a gateway node, built by hand.

func gwAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func gwTCPProxyChain(t testing.TB, cluster string, names ...string) *listener.FilterChain {
	return &listener.FilterChain{
		FilterChainMatch: &listener.FilterChainMatch{ServerNames: names},
		Filters: []*listener.Filter{{
			Name: wellknown.TCPProxy,
			ConfigType: &listener.Filter_TypedConfig{TypedConfig: gwAny(t, &tcpproxy.TcpProxy{
				StatPrefix: cluster, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: cluster},
			})},
		}},
	}
}

func gwListener(t testing.TB, name string, chains ...*listener.FilterChain) *listener.Listener {
	return &listener.Listener{
		Name: name,
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &core.SocketAddress_PortValue{PortValue: 15443},
		}}},
		ListenerFilters: []*listener.ListenerFilter{{
			Name:       wellknown.TLSInspector,
			ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: gwAny(t, &tlsinspector.TlsInspector{})},
		}},
		FilterChains: chains,
	}
}

func gwEDSCluster(name, serviceName string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: serviceName,
			EdsConfig:   &core.ConfigSource{ConfigSourceSpecifier: &core.ConfigSource_Ads{}, ResourceApiVersion: core.ApiVersion_V3},
		},
	}
}

type gwEP struct {
	addr     string
	priority uint32
	health   core.HealthStatus
}

func gwCLA(name string, eps ...gwEP) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	byPriority := map[uint32]*endpoint.LocalityLbEndpoints{}
	for _, e := range eps {
		le := byPriority[e.priority]
		if le == nil {
			le = &endpoint.LocalityLbEndpoints{
				Locality: &core.Locality{Region: "r", Zone: "z" + strconv.Itoa(int(e.priority))}, Priority: e.priority,
				LoadBalancingWeight: wrapperspb.UInt32(1),
			}
			byPriority[e.priority] = le
			cla.Endpoints = append(cla.Endpoints, le)
		}
		host, port, _ := net.SplitHostPort(e.addr)
		p, _ := strconv.Atoi(port)
		le.LbEndpoints = append(le.LbEndpoints, &endpoint.LbEndpoint{
			HealthStatus: e.health,
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: &core.Address{
				Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(p)}}},
			}}},
		})
	}
	return cla
}

const (
	gwSNIa = "outbound_.8080_._.echo.demo.svc.clusterset.local"
	gwSNIb = "outbound_.9090_._.api.demo.svc.clusterset.local"
)

func TestGatewayTable(t *testing.T) {
	noSNI := gwTCPProxyChain(t, "fallback")
	noSNI.FilterChainMatch = nil
	listeners := map[string]*listener.Listener{
		"gateway-15443": gwListener(t, "gateway-15443",
			gwTCPProxyChain(t, gwSNIa, gwSNIa),
			gwTCPProxyChain(t, gwSNIb, strings.ToUpper(gwSNIb), "*.wild.example"),
			gwTCPProxyChain(t, "no-such-cluster", "missing.example"),
			gwTCPProxyChain(t, "all-unhealthy", "unhealthy.example"),
			gwTCPProxyChain(t, "static", "static.example"),
			gwTCPProxyChain(t, "eds-pending", "pending.example"),
			noSNI,
			&listener.FilterChain{FilterChainMatch: &listener.FilterChainMatch{ServerNames: []string{"no-tcp-proxy.example"}}},
		),
		// A later listener that disagrees on a name loses.
		"gateway-15444": gwListener(t, "gateway-15444", gwTCPProxyChain(t, "static", gwSNIa)),
	}
	static := &clusterv3.Cluster{
		Name: "static", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: gwCLA("static", gwEP{addr: "10.9.9.9:80"}),
	}
	clusters := map[string]*clusterv3.Cluster{
		gwSNIa:          gwEDSCluster(gwSNIa, ""),
		gwSNIb:          gwEDSCluster(gwSNIb, "api-service"),
		"all-unhealthy": gwEDSCluster("all-unhealthy", ""),
		"static":        static,
		"eds-pending":   gwEDSCluster("eds-pending", ""),
	}
	assignments := map[string]*endpoint.ClusterLoadAssignment{
		gwSNIa: gwCLA(gwSNIa,
			gwEP{addr: "10.0.0.1:8080", health: core.HealthStatus_HEALTHY},
			gwEP{addr: "10.0.0.2:8080"},
			gwEP{addr: "10.0.0.2:8080"}, // duplicate
			gwEP{addr: "10.0.0.3:8080", health: core.HealthStatus_UNHEALTHY},
			gwEP{addr: "10.0.0.4:8080", health: core.HealthStatus_DRAINING},
			gwEP{addr: "10.0.1.1:8080", priority: 1},
		),
		// Priority 0 has nothing usable: priority 1 serves.
		"api-service": gwCLA("api-service",
			gwEP{addr: "10.1.0.1:9090", health: core.HealthStatus_UNHEALTHY},
			gwEP{addr: "[fd00::1]:9090", priority: 1},
		),
		"all-unhealthy": gwCLA("all-unhealthy", gwEP{addr: "10.2.0.1:1", health: core.HealthStatus_TIMEOUT}),
	}
	got := gatewayTable(listeners, clusters, assignments)
	want := sni.Table{
		gwSNIa:           {"10.0.0.1:8080", "10.0.0.2:8080"},
		gwSNIb:           {"[fd00::1]:9090"},
		"static.example": {"10.9.9.9:80"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("table:\n got %v\nwant %v", got, want)
	}
}

func TestListenerRoutesRejects(t *testing.T) {
	weighted := gwTCPProxyChain(t, "x", "x.example")
	weighted.Filters[0].ConfigType = &listener.Filter_TypedConfig{TypedConfig: gwAny(t, &tcpproxy.TcpProxy{
		StatPrefix: "x", ClusterSpecifier: &tcpproxy.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxy.TcpProxy_WeightedCluster{}},
	})}
	garbage := gwTCPProxyChain(t, "x", "x.example")
	garbage.Filters[0].GetTypedConfig().Value = []byte{0xff, 0xff, 0xff}
	tests := map[string]*listener.Listener{
		"weighted clusters": gwListener(t, "l", weighted),
		"bad typed config":  gwListener(t, "l", garbage),
		"name twice":        gwListener(t, "l", gwTCPProxyChain(t, "a", "x.example"), gwTCPProxyChain(t, "b", "X.example")),
	}
	for name, l := range tests {
		t.Run(name, func(t *testing.T) {
			if routes, err := listenerRoutes(l); err == nil {
				t.Errorf("accepted: %v", routes)
			}
		})
	}
}

// gwResponse builds a response as a server would.
func gwResponse(t testing.TB, typeURL, version, nonce string, msgs ...proto.Message) *discoverygrpc.DiscoveryResponse {
	resp := &discoverygrpc.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: version, Nonce: nonce}
	for _, m := range msgs {
		resp.Resources = append(resp.Resources, gwAny(t, m))
	}
	return resp
}

func TestADSClientAcksNacksAndKeepsTheLastGoodTable(t *testing.T) {
	var applied []sni.Table
	c := &adsClient{Apply: func(tb sni.Table) { applied = append(applied, tb) }}
	c.Logger = slog.New(slog.DiscardHandler)

	// CDS first: the client subscribes to the EDS names.
	reqs := c.handle(gwResponse(t, resource.ClusterType, "c1", "n1", gwEDSCluster(gwSNIa, ""), gwEDSCluster(gwSNIb, "api-service")))
	if len(reqs) != 2 || reqs[0].GetVersionInfo() != "c1" || reqs[0].GetResponseNonce() != "n1" || reqs[0].GetErrorDetail() != nil {
		t.Fatalf("CDS ACK: %v", reqs)
	}
	if eds := reqs[1]; eds.GetTypeUrl() != resource.EndpointType || !reflect.DeepEqual(eds.GetResourceNames(), []string{"api-service", gwSNIa}) {
		t.Fatalf("EDS subscription: %v", eds)
	}
	c.handle(gwResponse(t, resource.EndpointType, "e1", "n2", gwCLA(gwSNIa, gwEP{addr: "10.0.0.1:8080"})))
	c.handle(gwResponse(t, resource.ListenerType, "l1", "n3", gwListener(t, "gateway-15443", gwTCPProxyChain(t, gwSNIa, gwSNIa), gwTCPProxyChain(t, gwSNIb, gwSNIb))))
	if c.Ready() {
		t.Fatal("ready without an assignment for api-service")
	}
	// An EDS response with only the missing assignment keeps the other one.
	reqs = c.handle(gwResponse(t, resource.EndpointType, "e2", "n4", gwCLA("api-service", gwEP{addr: "10.1.0.1:9090"})))
	if !c.Ready() {
		t.Fatal("not ready with every resource")
	}
	if !reflect.DeepEqual(reqs[0].GetResourceNames(), []string{"api-service", gwSNIa}) || reqs[0].GetVersionInfo() != "e2" {
		t.Fatalf("EDS ACK: %v", reqs[0])
	}
	good := sni.Table{gwSNIa: {"10.0.0.1:8080"}, gwSNIb: {"10.1.0.1:9090"}}
	if last := applied[len(applied)-1]; !reflect.DeepEqual(last, good) {
		t.Fatalf("table %v, want %v", last, good)
	}

	// A listener that cannot be used: NACK at the last good version, with the
	// new nonce; the table stays.
	bad := gwTCPProxyChain(t, "x", "x.example")
	bad.Filters[0].GetTypedConfig().Value = []byte{0xff}
	n := len(applied)
	reqs = c.handle(gwResponse(t, resource.ListenerType, "l2", "n5", gwListener(t, "gateway-15443", bad)))
	if len(reqs) != 1 || reqs[0].GetErrorDetail() == nil || reqs[0].GetVersionInfo() != "l1" || reqs[0].GetResponseNonce() != "n5" {
		t.Fatalf("NACK: %v", reqs)
	}
	// An invalid resource (fails Validate) is NACKed too.
	reqs = c.handle(gwResponse(t, resource.ClusterType, "c2", "n6", &clusterv3.Cluster{Name: ""}))
	if reqs[0].GetErrorDetail() == nil || reqs[0].GetVersionInfo() != "c1" {
		t.Fatalf("NACK of an invalid cluster: %v", reqs)
	}
	if len(applied) != n || !c.Ready() {
		t.Fatal("a NACKed response changed the table")
	}

	// Clusters going away drop their assignments and routes.
	reqs = c.handle(gwResponse(t, resource.ClusterType, "c3", "n7", gwEDSCluster(gwSNIa, "")))
	if len(reqs) != 2 || !reflect.DeepEqual(reqs[1].GetResourceNames(), []string{gwSNIa}) || reqs[1].GetVersionInfo() != "e2" {
		t.Fatalf("EDS resubscription: %v", reqs)
	}
	if last := applied[len(applied)-1]; !reflect.DeepEqual(last, sni.Table{gwSNIa: {"10.0.0.1:8080"}}) {
		t.Fatalf("table after CDS removal: %v", last)
	}
}

// A go-control-plane ADS server in the test, serving the gateway contract;
// the real command connects to it and forwards TLS to real backends.

func gwSnapshot(t *testing.T, version string, routes map[string][]string) *cache.Snapshot {
	t.Helper()
	var chains []*listener.FilterChain
	var clusters, clas []types.Resource
	for name, addrs := range routes {
		chains = append(chains, gwTCPProxyChain(t, name, name))
		clusters = append(clusters, gwEDSCluster(name, ""))
		var eps []gwEP
		for _, a := range addrs {
			eps = append(eps, gwEP{addr: a, health: core.HealthStatus_HEALTHY})
		}
		clas = append(clas, gwCLA(name, eps...))
	}
	snap, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ListenerType: {gwListener(t, "gateway-15443", chains...)},
		resource.ClusterType:  clusters,
		resource.EndpointType: clas,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatal(err)
	}
	return snap
}

func gwTLSBackend(t *testing.T, id string, srv certtest.Server) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "%s\n", id)
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return lis.Addr().String()
}

// gwDial returns the id of the backend a TLS connection through the gateway
// reaches, verifying the backend's certificate.
func gwDial(addr, name string, srv certtest.Server) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, srv.ClientConfig(name))
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	id, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(id), err
}

func TestGatewayCommandEndToEnd(t *testing.T) {
	srv := certtest.NewServer(t, "spiffe://cluster.local/ns/demo/sa/echo")
	b1, b2 := gwTLSBackend(t, "b1", srv), gwTLSBackend(t, "b2", srv)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snapshots := cache.NewSnapshotCache(true, cache.IDHash{}, nil)
	const nodeID = "gateway~east~test"
	if err := snapshots.SetSnapshot(ctx, nodeID, gwSnapshot(t, "v1", map[string][]string{gwSNIa: {b1}})); err != nil {
		t.Fatal(err)
	}
	xdsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, snapshots, nil))
	go gs.Serve(xdsLis)
	defer gs.Stop()

	listen, httpAddr := freeLoopbackAddr(t), freeLoopbackAddr(t)
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	gctx, stop := context.WithCancel(ctx)
	go func() {
		done <- gatewayCommand(gctx, []string{
			"--xds-address", xdsLis.Addr().String(), "--cluster", "east", "--id", nodeID,
			"--listen", listen, "--http-address", httpAddr, "--drain-timeout", "1s", "--log-level", "debug",
		}, &stdout, &stderr)
	}()
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop")
		}
		if t.Failed() {
			t.Logf("gateway output:\n%s\n%s", stdout.String(), stderr.String())
		}
	}()

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testkit.Eventually(t, 10*time.Second, "the gateway ready", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	if id, err := gwDial(listen, gwSNIa, srv); err != nil || id != "b1" {
		t.Fatalf("through the gateway: %q, %v", id, err)
	}
	if _, err := gwDial(listen, "unknown.example", srv); err == nil {
		t.Fatal("unknown SNI routed")
	}

	// Horizon moves the service: the next connections follow.
	if err := snapshots.SetSnapshot(ctx, nodeID, gwSnapshot(t, "v2", map[string][]string{gwSNIa: {b2}})); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the service moved to b2", func() bool { id, _ := gwDial(listen, gwSNIa, srv); return id == "b2" })

	// The control plane goes away: the last table keeps routing.
	gs.Stop()
	if id, err := gwDial(listen, gwSNIa, srv); err != nil || id != "b2" {
		t.Fatalf("without the control plane: %q, %v", id, err)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{
		`horizon_gateway_connections_total{result="routed"}`,
		`horizon_gateway_connections_total{result="unknown_sni"} 1`,
		`horizon_gateway_xds_responses_total{result="ack",type="lds"}`,
		`horizon_gateway_routes 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestGatewayCommandFlags(t *testing.T) {
	var out bytes.Buffer
	if err := gatewayCommand(context.Background(), nil, &out, &out); err == nil || !strings.Contains(err.Error(), "--cluster") {
		t.Errorf("no --cluster: %v", err)
	}
	if err := gatewayCommand(context.Background(), []string{"--cluster", "East_1"}, &out, &out); err == nil {
		t.Error("a cluster name that is not a DNS label was accepted")
	}
}
