package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

// TestMadeUpLocalitiesShareViews: streams that each declare a different
// made-up sub-zone get the view of the nearest locality the ClusterSet
// knows, so they cannot make the server render a view each. Before, 200
// such streams made 201 views (2,000 made 9 GB and slowed every push).
func TestMadeUpLocalitiesShareViews(t *testing.T) {
	h := newHarness(t)
	before := len(h.srv.Cache().Views())
	for i := range 200 {
		n := node(fmt.Sprintf("p%d", i), "east-1")
		n.Locality = &core.Locality{Region: "us-east", Zone: "us-east-1a", SubZone: fmt.Sprintf("made-up-%d", i)}
		if i%2 == 0 {
			c := xdstest.NewSotW(t, h.conn)
			c.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
			c.Expect()
			c.Close()
		} else {
			d := xdstest.NewDelta(t, h.conn)
			d.Send(&discoverypb.DeltaDiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
			d.Expect()
			d.Close()
		}
	}
	if got := len(h.srv.Cache().Views()) - before; got > 1 {
		t.Fatalf("200 streams with made-up sub-zones made %d new views, want at most 1", got)
	}
	if got := testutil.ToFloat64(h.metrics.clamped); got != 200 {
		t.Errorf("clamped_localities_total = %v, want 200", got)
	}
	views := h.srv.Cache().Views()
	for _, v := range views {
		if strings.Contains(v.Group.Locality.SubZone, "made-up") {
			t.Errorf("a view for a made-up locality: %s", v.Group)
		}
	}
}

// TestViewLimit: once MaxViews views are rendered, a stream that needs
// another is refused with ResourceExhausted, and those that share a view
// still connect.
func TestViewLimit(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxViews = 2 })
	open := func(id, cluster, role string) *xdstest.SotW {
		c := xdstest.NewSotW(t, h.conn)
		c.Send(&discoverypb.DiscoveryRequest{Node: xdstest.Node(id, xds.MetaClusterID, cluster, xds.MetaRole, role), TypeUrl: resourcev3.ClusterType})
		return c
	}
	open("a", "east-1", "sidecar").Expect()
	open("b", "west-1", "sidecar").Expect()
	open("c", "east-1", "proxyless").ExpectError(codes.ResourceExhausted, "views")
	open("d", "east-1", "sidecar").Expect() // an existing view
	if got := testutil.ToFloat64(h.metrics.rejected.WithLabelValues("views")); got != 1 {
		t.Errorf("rejected_streams_total{reason=views} = %v, want 1", got)
	}
}

// TestNodeSizeBounds: a node id or node over the bounds is refused before
// anything is resolved, and the node a stream keeps is only what Horizon
// reads (canonicalNode): 200 streams with 3.9 MB of junk metadata each held
// 1.4 GB before.
func TestNodeSizeBounds(t *testing.T) {
	h := newHarness(t)
	junk := func(bytes int) *core.Node {
		n := node("junk", "east-1")
		n.Metadata.Fields["JUNK"] = structpb.NewStringValue(strings.Repeat("x", bytes))
		return n
	}
	for _, tt := range []struct {
		name string
		node *core.Node
	}{
		{"long id", node(strings.Repeat("n", MaxNodeIDBytes+1), "east-1")},
		{"large metadata", junk(MaxNodeBytes)},
		{"3.9 MB of metadata", junk(3_900_000)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := xdstest.NewSotW(t, h.conn)
			c.Send(&discoverypb.DiscoveryRequest{Node: tt.node, TypeUrl: resourcev3.ClusterType})
			c.ExpectError(codes.ResourceExhausted, "node_too_large")
			d := xdstest.NewDelta(t, h.conn)
			d.Send(&discoverypb.DeltaDiscoveryRequest{Node: tt.node, TypeUrl: resourcev3.ClusterType})
			d.ExpectError(codes.ResourceExhausted, "node_too_large")
		})
	}
	if got := testutil.ToFloat64(h.metrics.rejected.WithLabelValues("node_too_large")); got != 6 {
		t.Errorf("rejected_streams_total{reason=node_too_large} = %v, want 6 (3 nodes × 2 protocols)", got)
	}
	// Under the bound, accepted; what the stream keeps is the canonical node.
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: junk(MaxNodeBytes / 2), TypeUrl: resourcev3.ClusterType})
	c.Expect()
}

// TestCanonicalNode: the node a stream keeps holds the checked claims and
// nothing else, and resolves to the same proxy.
func TestCanonicalNode(t *testing.T) {
	n := xdstest.Node("p", xds.MetaClusterID, "east-1", xds.MetaRole, "sidecar", xds.MetaNamespace, "demo", "JUNK", strings.Repeat("x", 10000))
	n.UserAgentName = "envoy"
	n.Locality = &core.Locality{Region: "us-east", Zone: "us-east-1a"}
	n.Metadata.Fields[xds.MetaLabels] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"version": structpb.NewStringValue("v1")}})
	p, err := xds.ParseNode(n)
	if err != nil {
		t.Fatal(err)
	}
	p.Network = "east"
	canonicalNode(n, p)
	if _, ok := n.GetMetadata().GetFields()["JUNK"]; ok || proto.Size(n) > 300 {
		t.Fatalf("canonical node keeps what Horizon does not read (%d bytes): %v", proto.Size(n), n)
	}
	q, err := xds.ParseNode(n)
	if err != nil {
		t.Fatal(err)
	}
	if q.GroupFor([]string{"version"}) != p.GroupFor([]string{"version"}) || q.Namespace != "demo" || q.Network != "east" {
		t.Fatalf("canonical node parses to %+v, want %+v", q, p)
	}
}

// TestNACKFloodIsLoggedOnce: a client repeating one NACK is counted every
// time and logged once per stream, type and version, its message cut.
// Before, 100,000 NACKs of 1,000 bytes wrote 109 MiB of log.
func TestNACKFloodIsLoggedOnce(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("a", "east-1"), TypeUrl: resourcev3.ClusterType})
	r := c.Expect()
	msg := strings.Repeat("e", 1000)
	for range 1000 {
		c.NACK(r, msg)
	}
	testkit.Eventually(t, 10*time.Second, "1000 NACKs counted", func() bool { return testutil.ToFloat64(h.metrics.nacks.WithLabelValues("cds")) == 1000 })
	logs := h.logs.String()
	if n := strings.Count(logs, "proxy rejected config"); n != 1 {
		t.Errorf("%d NACK log lines for 1000 NACKs of one version, want 1", n)
	}
	if strings.Contains(logs, strings.Repeat("e", MaxNACKMessageBytes+1)) {
		t.Error("the NACK message is logged whole")
	}
	if sz := h.srv.Syncz(); len(sz[0].LastNACK["cluster"].Message) > MaxNACKMessageBytes+len("…") {
		t.Errorf("the kept NACK message has %d bytes", len(sz[0].LastNACK["cluster"].Message))
	}
}
