package server

import (
	"context"
	"net"
	"testing"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

// TestAuthenticatedStreams: on a TLS stream the proxy's identity comes from
// its verified certificate; node metadata that disagrees is refused before
// anything is sent, and counted.
func TestAuthenticatedStreams(t *testing.T) {
	// The mesh's root, and a foreign one the server's TLS also accepts, so
	// that Horizon's own identity check is what refuses its certificates.
	root := certtest.Root(t, spiffeid.RequireTrustDomainFromString("cluster.local"))
	evil := certtest.Root(t, spiffeid.RequireTrustDomainFromString("evil.example"))
	bundles := x509bundle.NewSet(root.Bundle(), evil.Bundle())
	cs := fixture.ClusterSet(t, "../testdata/protocol.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := NewMetrics(prometheus.NewRegistry())
	srv := New(ctx, Options{Metrics: m})
	if err := srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	serverSVID := certtest.SVID(t, root, "spiffe://cluster.local/ns/horizon-system/sa/horizon")
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsconfig.MTLSServerConfig(serverSVID, bundles, tlsconfig.AuthorizeAny()))))
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()

	tests := []struct {
		name     string
		ca       *certs.CA
		id       string
		meta     []string // NAMESPACE, SERVICE_ACCOUNT
		wantCode codes.Code
	}{
		{"claims match the certificate", root, "spiffe://cluster.local/ns/demo/sa/echo", []string{xds.MetaNamespace, "demo", xds.MetaServiceAccount, "echo"}, codes.OK},
		{"claims left out are taken from the certificate", root, "spiffe://cluster.local/ns/demo/sa/echo", nil, codes.OK},
		{"forged namespace", root, "spiffe://cluster.local/ns/demo/sa/echo", []string{xds.MetaNamespace, "payments", xds.MetaServiceAccount, "echo"}, codes.PermissionDenied},
		{"forged service account", root, "spiffe://cluster.local/ns/demo/sa/echo", []string{xds.MetaServiceAccount, "admin"}, codes.PermissionDenied},
		{"not a workload identity", root, "spiffe://cluster.local/gateway", nil, codes.Unauthenticated},
		{"another trust domain", evil, "spiffe://evil.example/ns/demo/sa/echo", nil, codes.Unauthenticated},
	}
	refused := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := certtest.SVID(t, tt.ca, tt.id)
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(
				tlsconfig.MTLSClientConfig(client, bundles, tlsconfig.AuthorizeID(serverSVID.ID)))))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			resp, err := xdstest.Fetch(t, conn, &discoverypb.DiscoveryRequest{Node: node("p-"+tt.name, "east-1", tt.meta...), TypeUrl: resourcev3.ClusterType})
			if tt.wantCode == codes.OK {
				if err != nil || len(resp.GetResources()) == 0 {
					t.Fatalf("want CDS, got %v %v", resp, err)
				}
				return
			}
			refused++
			if status.Code(err) != tt.wantCode || resp != nil {
				t.Fatalf("want %s and nothing sent, got %v, %v", tt.wantCode, resp, err)
			}
		})
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("identity")); got != float64(refused) {
		t.Errorf("rejected_streams_total{reason=identity} = %v, want %d", got, refused)
	}
}
