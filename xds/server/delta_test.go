package server

import (
	"slices"
	"testing"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
)

func names(r *discoverypb.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.GetResources() {
		out = append(out, res.GetName())
	}
	slices.Sort(out)
	return out
}

func TestDeltaSubscribeUnsubscribe(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewDelta(t, h.conn)
	eds := resourcev3.EndpointType

	c.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: eds, ResourceNamesSubscribe: []string{echoSet}})
	r := c.Expect()
	if got := names(r); !slices.Equal(got, []string{echoSet}) {
		t.Fatalf("first response %v, want only %s", got, echoSet)
	}
	c.ACK(r)
	c.ExpectNone()

	c.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: eds, ResourceNamesSubscribe: []string{emptySet}, ResponseNonce: r.GetNonce()})
	r = c.Expect()
	if got := names(r); !slices.Equal(got, []string{emptySet}) {
		t.Fatalf("after subscribing %s: %v, want only the new one", emptySet, got)
	}
	c.ACK(r)

	// Unsubscribing needs no answer.
	c.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: eds, ResourceNamesUnsubscribe: []string{echoSet}, ResponseNonce: r.GetNonce()})
	c.ExpectNone()

	// A change to echo (no longer subscribed) sends nothing; a change to
	// empty sends only empty.
	if err := h.srv.Apply(h.clusterSet([]string{"{address: 10.0.1.2}", "{address: 10.0.1.9}"})); err != nil {
		t.Fatal(err)
	}
	c.ExpectNone()
	if err := h.srv.Apply(h.clusterSet([]string{
		"{address: 10.0.1.2}", "{address: 10.0.1.9}",
		"name: empty\n        namespace: demo\n        exported: true\n        ports: [{name: grpc, port: 7070, appProtocol: grpc}]",
		"name: empty\n        namespace: demo\n        exported: true\n        ports: [{name: grpc, port: 7070, appProtocol: grpc}]\n        endpoints: [{address: 10.0.1.7}]",
	})); err != nil {
		t.Fatal(err)
	}
	r = c.Expect()
	if got := names(r); !slices.Equal(got, []string{emptySet}) {
		t.Fatalf("after the change: %v, want only %s", got, emptySet)
	}
	c.ACK(r)

	// Subscribing again sends echo again, as it is now.
	c.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: eds, ResourceNamesSubscribe: []string{echoSet}, ResponseNonce: r.GetNonce()})
	if got := names(c.Expect()); !slices.Equal(got, []string{echoSet}) {
		t.Fatalf("after subscribing again: %v, want %s", got, echoSet)
	}
}

func TestDeltaWildcardAndReconnect(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewDelta(t, h.conn)
	c.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: resourcev3.ClusterType})
	r := c.Expect()
	if len(r.GetResources()) < 2 {
		t.Fatalf("wildcard CDS gave %v", names(r))
	}
	known := map[string]string{}
	for _, res := range r.GetResources() {
		known[res.GetName()] = res.GetVersion()
	}
	// A new stream that already holds every cluster gets nothing but the
	// answer a wildcard subscription always needs: no resources.
	c2 := xdstest.NewDelta(t, h.conn)
	c2.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: resourcev3.ClusterType, InitialResourceVersions: known})
	r2 := c2.Expect()
	if len(r2.GetResources()) != 0 || len(r2.GetRemovedResources()) != 0 {
		t.Fatalf("reconnect resent %v, removed %v", names(r2), r2.GetRemovedResources())
	}
}
