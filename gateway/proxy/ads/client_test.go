package ads

import (
	"log/slog"
	"reflect"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/gateway/proxy/ads/adstest"
	"github.com/horizonmesh/horizon/gateway/proxy/sni"
)

// response builds a response as a server would.
func response(t testing.TB, typeURL, version, nonce string, msgs ...proto.Message) *discoverygrpc.DiscoveryResponse {
	resp := &discoverygrpc.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: version, Nonce: nonce}
	for _, m := range msgs {
		resp.Resources = append(resp.Resources, adstest.Any(t, m))
	}
	return resp
}

func TestADSClientAcksNacksAndKeepsTheLastGoodTable(t *testing.T) {
	var applied []sni.Table
	c := &Client{Apply: func(tb sni.Table) { applied = append(applied, tb) }}
	c.Logger = slog.New(slog.DiscardHandler)

	// CDS first: the client subscribes to the EDS names.
	reqs := c.handle(response(t, resource.ClusterType, "c1", "n1", adstest.EDSCluster(adstest.SNIEcho, ""), adstest.EDSCluster(adstest.SNIAPI, "api-service")))
	if len(reqs) != 2 || reqs[0].GetVersionInfo() != "c1" || reqs[0].GetResponseNonce() != "n1" || reqs[0].GetErrorDetail() != nil {
		t.Fatalf("CDS ACK: %v", reqs)
	}
	if eds := reqs[1]; eds.GetTypeUrl() != resource.EndpointType || !reflect.DeepEqual(eds.GetResourceNames(), []string{"api-service", adstest.SNIEcho}) {
		t.Fatalf("EDS subscription: %v", eds)
	}
	c.handle(response(t, resource.EndpointType, "e1", "n2", adstest.CLA(adstest.SNIEcho, adstest.EP{Addr: "10.0.0.1:8080"})))
	c.handle(response(t, resource.ListenerType, "l1", "n3", adstest.Listener(t, "gateway-15443", adstest.TCPProxyChain(t, adstest.SNIEcho, adstest.SNIEcho), adstest.TCPProxyChain(t, adstest.SNIAPI, adstest.SNIAPI))))
	if c.Ready() {
		t.Fatal("ready without an assignment for api-service")
	}
	// An EDS response with only the missing assignment keeps the other one.
	reqs = c.handle(response(t, resource.EndpointType, "e2", "n4", adstest.CLA("api-service", adstest.EP{Addr: "10.1.0.1:9090"})))
	if !c.Ready() {
		t.Fatal("not ready with every resource")
	}
	if !reflect.DeepEqual(reqs[0].GetResourceNames(), []string{"api-service", adstest.SNIEcho}) || reqs[0].GetVersionInfo() != "e2" {
		t.Fatalf("EDS ACK: %v", reqs[0])
	}
	good := sni.Table{adstest.SNIEcho: {"10.0.0.1:8080"}, adstest.SNIAPI: {"10.1.0.1:9090"}}
	if last := applied[len(applied)-1]; !reflect.DeepEqual(last, good) {
		t.Fatalf("table %v, want %v", last, good)
	}

	// A listener that cannot be used: NACK at the last good version, with the
	// new nonce; the table stays.
	bad := adstest.TCPProxyChain(t, "x", "x.example")
	bad.Filters[0].GetTypedConfig().Value = []byte{0xff}
	n := len(applied)
	reqs = c.handle(response(t, resource.ListenerType, "l2", "n5", adstest.Listener(t, "gateway-15443", bad)))
	if len(reqs) != 1 || reqs[0].GetErrorDetail() == nil || reqs[0].GetVersionInfo() != "l1" || reqs[0].GetResponseNonce() != "n5" {
		t.Fatalf("NACK: %v", reqs)
	}
	// An invalid resource (fails Validate) is NACKed too.
	reqs = c.handle(response(t, resource.ClusterType, "c2", "n6", &clusterv3.Cluster{Name: ""}))
	if reqs[0].GetErrorDetail() == nil || reqs[0].GetVersionInfo() != "c1" {
		t.Fatalf("NACK of an invalid cluster: %v", reqs)
	}
	if len(applied) != n || !c.Ready() {
		t.Fatal("a NACKed response changed the table")
	}

	// Clusters going away drop their assignments and routes.
	reqs = c.handle(response(t, resource.ClusterType, "c3", "n7", adstest.EDSCluster(adstest.SNIEcho, "")))
	if len(reqs) != 2 || !reflect.DeepEqual(reqs[1].GetResourceNames(), []string{adstest.SNIEcho}) || reqs[1].GetVersionInfo() != "e2" {
		t.Fatalf("EDS resubscription: %v", reqs)
	}
	if last := applied[len(applied)-1]; !reflect.DeepEqual(last, sni.Table{adstest.SNIEcho: {"10.0.0.1:8080"}}) {
		t.Fatalf("table after CDS removal: %v", last)
	}
}
