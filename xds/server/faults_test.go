package server

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
)

// A client that sends garbage gets a clear gRPC status or is ignored, as
// the xDS protocol says (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol),
// and no other stream notices. Each test ends by checking that a
// well-behaved stream opened alongside still gets a change.

// watchEcho opens a well-behaved state-of-the-world stream holding echo's
// assignment.
func watchEcho(t *testing.T, h *harness) *xdstest.SotW {
	t.Helper()
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("good", "east-1"), TypeUrl: resourcev3.EndpointType, ResourceNames: []string{echoSet}})
	c.ACK(c.Expect(), echoSet)
	return c
}

// stillServed changes echo's endpoints and expects the change on good.
func stillServed(t *testing.T, h *harness, good *xdstest.SotW, address string) {
	t.Helper()
	if err := h.srv.Apply(h.clusterSet([]string{"{address: 10.0.1.2}", "{address: " + address + "}"})); err != nil {
		t.Fatal(err)
	}
	if r := good.Expect(); r.GetTypeUrl() != resourcev3.EndpointType {
		t.Fatalf("the well-behaved stream got %s, want the changed assignment", r.GetTypeUrl())
	}
}

// TestUnknownTypeIsIgnored: a type Horizon does not serve is never
// answered and does not end the stream; the stream's other types work.
func TestUnknownTypeIsIgnored(t *testing.T) {
	h := newHarness(t)
	good := watchEcho(t, h)
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("a", "east-1"), TypeUrl: "type.googleapis.com/example.Unknown", ResourceNames: []string{"x"}})
	c.ExpectNone()
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	if r := c.Expect(); r.GetTypeUrl() != resourcev3.ClusterType {
		t.Fatalf("got %s, want CDS", r.GetTypeUrl())
	}
	d := xdstest.NewDelta(t, h.conn)
	d.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: "type.googleapis.com/example.Unknown"})
	d.ExpectNone()
	d.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	d.Expect()
	stillServed(t, h, good, "10.0.1.8")
}

// TestNonceNeverSent: a state-of-the-world request whose nonce the server
// never sent is stale and ignored (even one that asks for new names); an
// incremental ACK of a nonce never sent is no ACK. Neither ends the stream.
func TestNonceNeverSent(t *testing.T) {
	h := newHarness(t)
	good := watchEcho(t, h)
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("a", "east-1"), TypeUrl: resourcev3.EndpointType, ResourceNames: []string{echoSet}})
	r := c.Expect()
	c.ACK(r, echoSet)
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: "forged", ResponseNonce: "never-sent", ResourceNames: []string{echoSet, emptySet}})
	c.ExpectNone()
	for _, ps := range h.srv.Syncz() {
		if ps.ID == "a" && ps.Acked["assignment"] != r.GetVersionInfo() {
			t.Errorf("SotW: acked %q after a request with a nonce never sent, want %q (the last real ACK)", ps.Acked["assignment"], r.GetVersionInfo())
		}
	}
	// The same request with the right nonce is answered.
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(), ResourceNames: []string{echoSet, emptySet}})
	if got := responseNames(t, c.Expect()); !slices.Equal(got, []string{emptySet}) {
		t.Fatalf("after the real ACK: %v, want %s", got, emptySet)
	}

	d := xdstest.NewDelta(t, h.conn)
	d.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: resourcev3.ClusterType})
	dr := d.Expect()
	d.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: "12345"})
	d.ExpectNone()
	for _, ps := range h.srv.Syncz() {
		if ps.Protocol == "delta" && ps.Acked["cluster"] != "" {
			t.Errorf("an ACK of a nonce never sent counted as an ACK of %s", ps.Acked["cluster"])
		}
	}
	d.ACK(dr)
	d.ExpectNone()
	stillServed(t, h, good, "10.0.1.8")
}

// TestNACKOfVersionNeverSent: a NACK naming a nonce, and so a version, the
// client was never sent is counted and kept (with no version) but sends
// nothing and ends nothing.
func TestNACKOfVersionNeverSent(t *testing.T) {
	h := newHarness(t)
	good := watchEcho(t, h)
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("a", "east-1"), TypeUrl: resourcev3.ClusterType})
	r := c.Expect()
	c.ACK(r)
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: "never-sent", ResponseNonce: "77",
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "made up"}})
	c.ExpectNone()
	d := xdstest.NewDelta(t, h.conn)
	d.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: resourcev3.ClusterType})
	d.ACK(d.Expect())
	d.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: "77",
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "made up"}})
	d.ExpectNone()
	if got := testutil.ToFloat64(h.metrics.nacks.WithLabelValues("cds")); got != 2 {
		t.Errorf("nacks_total{type=cds} = %v, want 2", got)
	}
	for _, ps := range h.srv.Syncz() {
		if n, ok := ps.LastNACK["cluster"]; ps.ID != "good" && (!ok || n.Version != "" || n.Message != "made up") {
			t.Errorf("%s %s: last NACK %+v, want the message and no version", ps.ID, ps.Protocol, n)
		}
	}
	stillServed(t, h, good, "10.0.1.8")
}

// distinctNames returns n distinct short names.
func distinctNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i)
	}
	return out
}

// TestTooManyNames: a stream that subscribes to more than
// MaxSubscribedNames names of a type is ended with ResourceExhausted and
// counted, on either protocol, in one request or several; a request over
// gRPC's message limit (a million names) is refused by gRPC itself. The
// names such streams held are let go.
func TestTooManyNames(t *testing.T) {
	h := newHarness(t)
	good := watchEcho(t, h)
	over := distinctNames(MaxSubscribedNames + 1)

	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("a", "east-1"), TypeUrl: resourcev3.EndpointType, ResourceNames: over})
	c.ExpectError(codes.ResourceExhausted, "too_many_names")

	d := xdstest.NewDelta(t, h.conn)
	d.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: over[:MaxSubscribedNames/2]})
	d.ExpectNone() // names that do not exist: nothing until they do
	d.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: over[MaxSubscribedNames/2:]})
	d.ExpectError(codes.ResourceExhausted, "too_many_names")

	d2 := xdstest.NewDelta(t, h.conn)
	initial := map[string]string{}
	for _, n := range over {
		initial[n] = "v"
	}
	d2.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("d2", "east-1"), TypeUrl: resourcev3.ClusterType, InitialResourceVersions: initial})
	d2.ExpectError(codes.ResourceExhausted, "too_many_names")
	if got := testutil.ToFloat64(h.metrics.rejected.WithLabelValues("too_many_names")); got != 3 {
		t.Errorf("rejected_streams_total{reason=too_many_names} = %v, want 3", got)
	}
	if !strings.Contains(h.logs.String(), "names of assignment") {
		t.Errorf("the log does not say how many names of which type:\n%s", h.logs.String())
	}

	m := xdstest.NewSotW(t, h.conn)
	m.Send(&discoverypb.DiscoveryRequest{Node: node("m", "east-1"), TypeUrl: resourcev3.EndpointType, ResourceNames: distinctNames(1_000_000)})
	m.ExpectError(codes.ResourceExhausted, "larger than max")

	good.Close()
	testkit.Eventually(t, 10*time.Second, "every stream's names let go", func() bool { return h.srv.names.len() == 0 })
}
