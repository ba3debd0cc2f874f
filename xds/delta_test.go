package xds

import (
	"context"
	"slices"
	"testing"
	"time"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

type deltaClient struct {
	t      *testing.T
	stream discoverypb.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	resps  chan *discoverypb.DeltaDiscoveryResponse
	errs   chan error
}

func (h *harness) delta() *deltaClient {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	stream, err := discoverypb.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	c := &deltaClient{t: h.t, stream: stream, resps: make(chan *discoverypb.DeltaDiscoveryResponse, 16), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				c.errs <- err
				return
			}
			c.resps <- r
		}
	}()
	return c
}

func (c *deltaClient) send(req *discoverypb.DeltaDiscoveryRequest) {
	c.t.Helper()
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *deltaClient) expect() *discoverypb.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.resps:
		return r
	case err := <-c.errs:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second):
		c.t.Fatal("no response")
	}
	return nil
}

func (c *deltaClient) expectNone() {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.t.Fatalf("unexpected response: %d resources, removed %v", len(r.GetResources()), r.GetRemovedResources())
	case err := <-c.errs:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(quiet):
	}
}

func names(r *discoverypb.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.GetResources() {
		out = append(out, res.GetName())
	}
	slices.Sort(out)
	return out
}

func (c *deltaClient) ack(r *discoverypb.DeltaDiscoveryResponse) {
	c.send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
}

func TestDeltaSubscribeUnsubscribe(t *testing.T) {
	h := newHarness(t)
	c := h.delta()
	eds := resourcev3.EndpointType

	c.send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: eds, ResourceNamesSubscribe: []string{echoSet}})
	r := c.expect()
	if got := names(r); !slices.Equal(got, []string{echoSet}) {
		t.Fatalf("first response %v, want only %s", got, echoSet)
	}
	c.ack(r)
	c.expectNone()

	c.send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: eds, ResourceNamesSubscribe: []string{emptySet}, ResponseNonce: r.GetNonce()})
	r = c.expect()
	if got := names(r); !slices.Equal(got, []string{emptySet}) {
		t.Fatalf("after subscribing %s: %v, want only the new one", emptySet, got)
	}
	c.ack(r)

	// Unsubscribing needs no answer.
	c.send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: eds, ResourceNamesUnsubscribe: []string{echoSet}, ResponseNonce: r.GetNonce()})
	c.expectNone()

	// A change to echo (no longer subscribed) sends nothing; a change to
	// empty sends only empty.
	if err := h.srv.Apply(h.clusterSet([]string{"{address: 10.0.1.2}", "{address: 10.0.1.9}"})); err != nil {
		t.Fatal(err)
	}
	c.expectNone()
	if err := h.srv.Apply(h.clusterSet([]string{
		"{address: 10.0.1.2}", "{address: 10.0.1.9}",
		"name: empty\n        namespace: demo\n        exported: true\n        ports: [{name: grpc, port: 7070, appProtocol: grpc}]",
		"name: empty\n        namespace: demo\n        exported: true\n        ports: [{name: grpc, port: 7070, appProtocol: grpc}]\n        endpoints: [{address: 10.0.1.7}]",
	})); err != nil {
		t.Fatal(err)
	}
	r = c.expect()
	if got := names(r); !slices.Equal(got, []string{emptySet}) {
		t.Fatalf("after the change: %v, want only %s", got, emptySet)
	}
	c.ack(r)

	// Subscribing again sends echo again, as it is now.
	c.send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: eds, ResourceNamesSubscribe: []string{echoSet}, ResponseNonce: r.GetNonce()})
	if got := names(c.expect()); !slices.Equal(got, []string{echoSet}) {
		t.Fatalf("after subscribing again: %v, want %s", got, echoSet)
	}
}

func TestDeltaWildcardAndReconnect(t *testing.T) {
	h := newHarness(t)
	c := h.delta()
	c.send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: resourcev3.ClusterType})
	r := c.expect()
	if len(r.GetResources()) < 2 {
		t.Fatalf("wildcard CDS gave %v", names(r))
	}
	known := map[string]string{}
	for _, res := range r.GetResources() {
		known[res.GetName()] = res.GetVersion()
	}
	// A new stream that already holds every cluster gets nothing but the
	// answer a wildcard subscription always needs: no resources.
	c2 := h.delta()
	c2.send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: resourcev3.ClusterType, InitialResourceVersions: known})
	r2 := c2.expect()
	if len(r2.GetResources()) != 0 || len(r2.GetRemovedResources()) != 0 {
		t.Fatalf("reconnect resent %v, removed %v", names(r2), r2.GetRemovedResources())
	}
}
