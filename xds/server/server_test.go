package server

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

type harness struct {
	t       *testing.T
	srv     *Server
	metrics *Metrics
	conn    *grpc.ClientConn
	fixture []byte
	logs    *testkit.Buffer // the server's log
}

func newHarness(t *testing.T, opts ...func(*Options)) *harness {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
	fixture, err := os.ReadFile("../testdata/protocol.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMetrics(prometheus.NewRegistry())
	h := &harness{t: t, metrics: m, fixture: fixture, logs: &testkit.Buffer{}}
	o := Options{Metrics: m, Debounce: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(h.logs, nil))}
	for _, f := range opts {
		f(&o)
	}
	srv := New(ctx, o)
	h.srv = srv
	if err := srv.Apply(h.clusterSet(nil)); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ForceServerCodecV2(Codec()))
	srv.Register(g)
	go g.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.conn = conn
	t.Cleanup(func() {
		conn.Close()
		cancel()
		g.Stop()
	})
	return h
}

// clusterSet parses the fixture after applying textual edits (old, new pairs).
func (h *harness) clusterSet(edits []string) *discovery.ClusterSet {
	h.t.Helper()
	text := string(h.fixture)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(text, edits[i]) {
			h.t.Fatalf("fixture has no %q", edits[i])
		}
		text = strings.Replace(text, edits[i], edits[i+1], 1)
	}
	cs, err := file.Parse("../testdata/protocol.yaml", []byte(text))
	if err != nil {
		h.t.Fatal(err)
	}
	return cs
}

// node is a sidecar of cluster, with extra metadata (key, value pairs).
func node(id, cluster string, extra ...string) *core.Node {
	return xdstest.Node(id, append([]string{xds.MetaClusterID, cluster, xds.MetaRole, "sidecar"}, extra...)...)
}

const (
	echoSet  = "outbound_.7070_._.echo.demo.svc.clusterset.local"
	emptySet = "outbound_.7070_._.empty.demo.svc.clusterset.local"
)

func TestACKIsNotAnswered(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewSotW(t, h.conn)
	n := node("a", "east-1")
	c.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
	r := c.Expect()
	if len(r.GetResources()) == 0 || r.GetVersionInfo() == "" {
		t.Fatalf("empty CDS response: %v", r)
	}
	c.ACK(r)
	c.ExpectNone()
	if got := h.srv.Syncz(); len(got) != 1 || got[0].Acked["cluster"] != r.GetVersionInfo() {
		t.Fatalf("syncz = %+v, want cluster acked at %s", got, r.GetVersionInfo())
	}
}

func TestNACKedVersionIsNotResent(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewSotW(t, h.conn)
	n := node("a", "east-1")
	c.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
	r := c.Expect()
	// Envoy rejects the first response: it keeps no version and says why.
	c.NACK(r, "bad cluster")
	c.ExpectNone()
	if got := testutil.ToFloat64(h.metrics.nacks.WithLabelValues("cds")); got != 1 {
		t.Errorf("nacks_total{type=cds} = %v, want 1", got)
	}
	sz := h.srv.Syncz()
	if len(sz) != 1 || sz[0].LastNACK["cluster"].Message != "bad cluster" || sz[0].LastNACK["cluster"].Version != r.GetVersionInfo() {
		t.Fatalf("syncz = %+v, want the last NACK of %s kept", sz, r.GetVersionInfo())
	}
	// New content is sent.
	if err := h.srv.Apply(h.clusterSet([]string{"name: empty", "name: empty2"})); err != nil {
		t.Fatal(err)
	}
	r2 := c.Expect()
	if r2.GetVersionInfo() == r.GetVersionInfo() {
		t.Fatal("content changed but the version did not")
	}
}

func TestReconnectWithCurrentVersionGetsNoPush(t *testing.T) {
	h := newHarness(t)
	n := node("a", "east-1")
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
	cds := c.Expect()
	c.ACK(cds)
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{echoSet}})
	eds := c.Expect()
	c.Close()

	// A new stream, as after a control-plane restart, presenting the versions
	// it holds: nothing to send.
	c2 := xdstest.NewSotW(t, h.conn)
	c2.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType, VersionInfo: cds.GetVersionInfo()})
	c2.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: eds.GetVersionInfo(), ResourceNames: []string{echoSet}})
	c2.ExpectNone()

	// Asking for one more name with the same version is a different state.
	c2.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: eds.GetVersionInfo(), ResourceNames: []string{echoSet, emptySet}})
	if r := c2.Expect(); r.GetTypeUrl() != resourcev3.EndpointType || len(r.GetResources()) == 0 {
		t.Fatalf("want EDS for the new name, got %v", r)
	}

	// A stale version gets the current state.
	c3 := xdstest.NewSotW(t, h.conn)
	c3.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType, VersionInfo: "stale"})
	if r := c3.Expect(); r.GetVersionInfo() != cds.GetVersionInfo() {
		t.Fatalf("version %s, want %s", r.GetVersionInfo(), cds.GetVersionInfo())
	}
}

func TestNodeIDChangeClosesStream(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("a", "east-1"), TypeUrl: resourcev3.ClusterType})
	c.Expect()
	c.Send(&discoverypb.DiscoveryRequest{Node: node("b", "east-1"), TypeUrl: resourcev3.ListenerType})
	c.ExpectError(codes.InvalidArgument, "node_changed")
	if got := testutil.ToFloat64(h.metrics.rejected.WithLabelValues("node_changed")); got != 1 {
		t.Errorf("rejected_streams_total{reason=node_changed} = %v, want 1", got)
	}
}

func TestBadNodeIsRefused(t *testing.T) {
	tests := []struct {
		name string
		node *core.Node
		want string
	}{
		{"no node", nil, "empty node id"},
		{"no cluster", &core.Node{Id: "x1"}, "CLUSTER_ID is required"},
		{"unknown cluster", node("x2", "mars-1"), `CLUSTER_ID "mars-1" is not a member`},
		{"bad role", node("x3", "east-1", xds.MetaRole, "router"), `ROLE="router"`},
		{"wrong network", node("x4", "east-1", xds.MetaNetwork, "west"), `cluster "east-1" is on network "east"`},
		{"not a string", &core.Node{Id: "x5", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{xds.MetaClusterID: structpb.NewNumberValue(3)}}}, "must be a string"},
	}
	h := newHarness(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := xdstest.NewSotW(t, h.conn)
			c.Send(&discoverypb.DiscoveryRequest{Node: tt.node, TypeUrl: resourcev3.ClusterType})
			// The client learns the reason; the detail goes to the log.
			c.ExpectError(codes.InvalidArgument, "bad_node: ")
			if !strings.Contains(h.logs.String(), strconv.Quote(tt.want)[1:len(strconv.Quote(tt.want))-1]) {
				t.Errorf("the log does not say %q:\n%s", tt.want, h.logs.String())
			}
		})
	}
	if got := testutil.ToFloat64(h.metrics.rejected.WithLabelValues("bad_node")); got != float64(len(tests)) {
		t.Errorf("rejected_streams_total{reason=bad_node} = %v, want %d", got, len(tests))
	}
	// The server is unharmed.
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("ok", "east-1"), TypeUrl: resourcev3.ClusterType})
	c.Expect()
}

func TestEDSForClusterWithoutEndpoints(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("a", "east-1"), TypeUrl: resourcev3.EndpointType, ResourceNames: []string{emptySet}})
	r := c.Expect()
	if len(r.GetResources()) != 1 {
		t.Fatalf("%d resources, want an empty assignment", len(r.GetResources()))
	}
	var cla endpoint.ClusterLoadAssignment
	if err := r.GetResources()[0].UnmarshalTo(&cla); err != nil {
		t.Fatal(err)
	}
	if cla.GetClusterName() != emptySet || len(cla.GetEndpoints()) != 0 {
		t.Fatalf("assignment %v, want %s with no endpoints", &cla, emptySet)
	}
}

// TestPushOrder checks that one change reaches a proxy as CDS, EDS, LDS, RDS.
func TestPushOrder(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewSotW(t, h.conn)
	n := node("a", "east-1")
	c.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
	cds := c.Expect()
	c.ACK(cds)
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{echoSet}})
	eds := c.Expect()
	c.ACK(eds, echoSet)
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	lds := c.Expect()
	c.ACK(lds)
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNames: []string{"7070"}})
	rds := c.Expect()
	c.ACK(rds, "7070")
	c.ExpectNone()

	// Echo's port changes: its cluster, assignment, listener and route all do.
	// (Ports are edited in both clusters that export echo.)
	edits := []string{}
	for range 2 {
		edits = append(edits, "ports: [{name: grpc, port: 7070, appProtocol: grpc}]\n        endpoints:\n          - {address: 10.", "ports: [{name: grpc, port: 7070, appProtocol: grpc}, {name: grpc-alt, port: 7071, appProtocol: grpc}]\n        endpoints:\n          - {address: 10.")
	}
	if err := h.srv.Apply(h.clusterSet(edits)); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, want := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		r := c.Expect()
		order = append(order, xds.ShortType(r.GetTypeUrl()))
		if r.GetTypeUrl() != want {
			t.Fatalf("push order %v, want cluster before listener", order)
		}
	}
}

func TestUpdatesAreDebounced(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var last *discovery.ClusterSet
	for i := range 5 {
		last = h.clusterSet([]string{"{address: 10.0.1.2}", "{address: 10.0.1." + string(rune('3'+i)) + "}"})
		h.srv.Update(last)
	}
	testkit.Eventually(t, 10*time.Second, "the last update applied", func() bool { return h.srv.Current().Version() == last.Version() })
	time.Sleep(xdstest.Quiet)
	if got := histogramCount(t, h.metrics.push); got != 2 { // the initial Apply, then one for the burst
		t.Fatalf("%d renders, want the burst of 5 updates coalesced into 1", got-1)
	}
}

// TestIsolatedUpdateIsNotDelayed: the debounce bounds how often views are
// rendered, not how long an isolated change waits. With an interval of an
// hour, the first change after a quiet interval is still applied, and the
// one right after it waits.
func TestIsolatedUpdateIsNotDelayed(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	srv := New(ctx, Options{Debounce: time.Hour})
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	first := h.clusterSet([]string{"{address: 10.0.1.2}"})
	srv.Update(first)
	testkit.Eventually(t, 10*time.Second, "an isolated update applied without waiting for the debounce interval (an hour)", func() bool { return srv.Current() != nil })
	if got := srv.Current().Version(); got != first.Version() {
		t.Fatalf("serving %s, want %s", got, first.Version())
	}
	second := h.clusterSet([]string{"{address: 10.0.1.3}"})
	srv.Update(second)
	time.Sleep(xdstest.Quiet)
	if got := srv.Current().Version(); got != first.Version() {
		t.Fatalf("an update within the debounce interval was applied at once (serving %s)", got)
	}
}

func histogramCount(t *testing.T, c prometheus.Collector) uint64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var pb dto.Metric
	if err := (<-ch).Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram().GetSampleCount()
}
