package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

// mtlsHarness is an xDS server on a mutual-TLS port as `horizon serve
// --ca-dir` runs it: client certificates requested, verified against the
// root, and every claim bound to the verified chain (Trust).
type mtlsHarness struct {
	addr     string
	root     *certs.CA
	east     *certs.CA // east-1's intermediate
	west     *certs.CA // west-1's intermediate
	bundles  x509bundle.Source
	serverID spiffeid.ID
	metrics  *Metrics
}

const gatewayID = "spiffe://cluster.local/ns/horizon-system/sa/horizon-eastwest"

func newMTLSHarness(t *testing.T) *mtlsHarness {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root := certtest.Root(t, td)
	east, err := root.NewIntermediate("east-1")
	if err != nil {
		t.Fatal(err)
	}
	west, err := root.NewIntermediate("west-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := &mtlsHarness{root: root, east: east, west: west, bundles: root.Bundle(), metrics: NewMetrics(prometheus.NewRegistry())}
	srv := New(ctx, Options{Metrics: h.metrics, Trust: Trust{
		Bundles:  root.Bundle(),
		Gateways: []string{gatewayID},
		Clusters: []ClusterRule{{Pattern: "spiffe://cluster.local/ns/spire/sa/*", Cluster: "west-1"}},
	}})
	if err := srv.Apply(fixture.ClusterSet(t, "../testdata/protocol.yaml")); err != nil {
		t.Fatal(err)
	}
	serverSVID := certtest.SVID(t, root, "spiffe://cluster.local/ns/horizon-system/sa/horizon")
	h.serverID = serverSVID.ID
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(certsvc.ServerTLS(serverSVID, root.Bundle(), td, time.Now))))
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return h
}

// dial connects with the client chain (leaf first) and key of svid, plus
// extra certificates sent after it.
func (h *mtlsHarness) dial(t *testing.T, svid *x509svid.SVID, extra ...*x509.Certificate) *grpc.ClientConn {
	t.Helper()
	var raw [][]byte
	for _, c := range append(svid.Certificates, extra...) {
		raw = append(raw, c.Raw)
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.root.Certificate())
	conf := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: raw, PrivateKey: svid.PrivateKey}},
		// The server's SPIFFE ID is checked below, not its host name.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			var chain []*x509.Certificate
			for _, der := range rawCerts {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			id, err := certs.Verify(chain, h.bundles, time.Now())
			if err == nil && id != h.serverID {
				t.Errorf("server is %s", id)
			}
			return err
		},
	}
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// claimNode is a node with CLUSTER_ID cluster and extra metadata.
func claimNode(id, cluster string, extra ...string) *core.Node {
	return xdstest.Node(id, append([]string{xds.MetaClusterID, cluster}, extra...)...)
}

// fetchBoth asks for CDS on a new stream of each protocol and returns the
// error of each (nil: resources came).
func fetchBoth(t *testing.T, conn *grpc.ClientConn, n *core.Node) (sotw, delta error) {
	t.Helper()
	resp, err := xdstest.Fetch(t, conn, &discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
	if err == nil && len(resp.GetResources()) == 0 {
		t.Fatalf("node %s: an empty CDS response", n.GetId())
	}
	if err != nil && resp != nil {
		t.Fatalf("node %s: refused after a response was sent", n.GetId())
	}
	d := xdstest.NewDelta(t, conn)
	defer d.Close()
	d.Send(&discoverypb.DeltaDiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
	r, derr := d.Next()
	if derr == nil && len(r.GetResources()) == 0 {
		t.Fatalf("node %s: an empty delta CDS response", n.GetId())
	}
	return err, derr
}

// TestClaimsBoundToCredential: on the mutual-TLS port every claim of a
// node's metadata must agree with its verified certificate, on both
// protocols, or the stream is refused with PermissionDenied naming the
// field, counted by reason, and nothing is sent. Before the claims were
// bound, an east-1 SVID got west-1's view by saying CLUSTER_ID=west-1, and
// the gateway view by saying ROLE=gateway.
func TestClaimsBoundToCredential(t *testing.T) {
	h := newMTLSHarness(t)
	echoEast := certtest.SVID(t, h.east, "spiffe://cluster.local/ns/demo/sa/echo")
	gwEast := certtest.SVID(t, h.east, gatewayID)
	fromRoot := certtest.SVID(t, h.root, "spiffe://cluster.local/ns/demo/sa/echo")
	spire := certtest.SVID(t, h.root, "spiffe://cluster.local/ns/spire/sa/agent")
	evil := certtest.Root(t, spiffeid.RequireTrustDomainFromString("evil.example"))

	tests := []struct {
		name   string
		svid   *x509svid.SVID
		extra  []*x509.Certificate
		node   *core.Node
		code   codes.Code
		reason string // rejected_streams_total reason; the status starts with it
	}{
		{"claims match", echoEast, nil, claimNode("ok", "east-1", xds.MetaNamespace, "demo", xds.MetaServiceAccount, "echo"), codes.OK, ""},
		{"claims left out are taken from the certificate", echoEast, nil, claimNode("ok2", "east-1"), codes.OK, ""},
		{"east-1 SVID claims west-1", echoEast, nil, claimNode("a", "west-1"), codes.PermissionDenied, "claim_cluster"},
		{"east-1 SVID with west-1's intermediate spliced in", echoEast, []*x509.Certificate{h.west.Certificate()}, claimNode("b", "west-1"), codes.PermissionDenied, "claim_cluster"},
		{"a sidecar claims ROLE=gateway", echoEast, nil, claimNode("c", "east-1", xds.MetaRole, "gateway"), codes.PermissionDenied, "claim_role"},
		{"a gateway identity is a gateway", gwEast, nil, claimNode("gw", "east-1", xds.MetaRole, "gateway"), codes.OK, ""},
		{"forged namespace", echoEast, nil, claimNode("d", "east-1", xds.MetaNamespace, "payments"), codes.PermissionDenied, "claim_namespace"},
		{"forged service account", echoEast, nil, claimNode("e", "east-1", xds.MetaServiceAccount, "admin"), codes.PermissionDenied, "claim_service_account"},
		{"network of another cluster", echoEast, nil, claimNode("f", "east-1", xds.MetaNetwork, "west"), codes.PermissionDenied, "claim_network"},
		{"a certificate bound to no cluster", fromRoot, nil, claimNode("g", "east-1"), codes.PermissionDenied, "cluster_unbound"},
		{"an ID rule binds a cluster", spire, nil, claimNode("s", "west-1"), codes.OK, ""},
		{"an ID rule's cluster only", spire, nil, claimNode("s2", "east-1"), codes.PermissionDenied, "claim_cluster"},
		{"not a workload identity", certtest.SVID(t, h.east, "spiffe://cluster.local/gateway"), nil, claimNode("h", "east-1"), codes.Unauthenticated, "identity"},
		{"another trust domain", certtest.SVID(t, evil, "spiffe://evil.example/ns/demo/sa/echo"), nil, claimNode("i", "east-1"), codes.Unavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := testutil.ToFloat64(h.metrics.rejected.WithLabelValues(tt.reason))
			conn := h.dial(t, tt.svid, tt.extra...)
			errs := map[string]error{}
			errs["sotw"], errs["delta"] = fetchBoth(t, conn, tt.node)
			for proto, err := range errs {
				switch {
				case tt.code == codes.OK && err != nil:
					t.Errorf("%s: refused: %v", proto, err)
				case tt.code == codes.Unavailable:
					// The handshake refuses a foreign root before any stream.
					if status.Code(err) != codes.Unavailable {
						t.Errorf("%s: %v, want the handshake to fail", proto, err)
					}
				case tt.code != codes.OK:
					st, _ := status.FromError(err)
					if st.Code() != tt.code || tt.reason == "" || len(st.Message()) < len(tt.reason) || st.Message()[:len(tt.reason)] != tt.reason {
						t.Errorf("%s: %v, want %s starting with %q", proto, err, tt.code, tt.reason)
					}
				}
			}
			if tt.reason != "" {
				if got := testutil.ToFloat64(h.metrics.rejected.WithLabelValues(tt.reason)) - before; got != 2 {
					t.Errorf("rejected_streams_total{reason=%s} rose by %v, want 2 (one per protocol)", tt.reason, got)
				}
			}
		})
	}
}

// TestNodeFixedByFirstRequest: a later request on the same stream that
// changes any node field is refused, as a changed node id is; on both
// protocols. Before, a stream switched to the new cluster's view, and a
// changed namespace was accepted silently.
func TestNodeFixedByFirstRequest(t *testing.T) {
	h := newMTLSHarness(t)
	conn := h.dial(t, certtest.SVID(t, h.east, "spiffe://cluster.local/ns/demo/sa/echo"))
	first := claimNode("p", "east-1", xds.MetaNamespace, "demo")
	for _, later := range []*core.Node{
		claimNode("p", "west-1", xds.MetaNamespace, "demo"),
		claimNode("p", "east-1", xds.MetaNamespace, "other"),
		claimNode("p", "east-1", xds.MetaNamespace, "demo", "EXTRA", "x"),
	} {
		s := xdstest.NewSotW(t, conn)
		s.Send(&discoverypb.DiscoveryRequest{Node: first, TypeUrl: resourcev3.ClusterType})
		s.Expect()
		// The same node again is fine.
		s.Send(&discoverypb.DiscoveryRequest{Node: first, TypeUrl: resourcev3.ListenerType})
		s.Expect()
		s.Send(&discoverypb.DiscoveryRequest{Node: later, TypeUrl: resourcev3.RouteType, ResourceNames: []string{"x"}})
		s.ExpectError(codes.InvalidArgument, "node_changed")
		s.Close()

		d := xdstest.NewDelta(t, conn)
		d.Send(&discoverypb.DeltaDiscoveryRequest{Node: first, TypeUrl: resourcev3.ClusterType})
		d.Expect()
		d.Send(&discoverypb.DeltaDiscoveryRequest{Node: later, TypeUrl: resourcev3.ListenerType})
		d.ExpectError(codes.InvalidArgument, "node_changed")
		d.Close()
	}
	if got := testutil.ToFloat64(h.metrics.rejected.WithLabelValues("node_changed")); got != 6 {
		t.Errorf("rejected_streams_total{reason=node_changed} = %v, want 6", got)
	}
}
