package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/discovery/file"
)

// testCA issues certificates for the authenticated-stream tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// leaf issues a certificate whose only URI SAN is id.
func (ca *testCA) leaf(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{u}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestAuthenticatedStreams: on a TLS stream the proxy's identity comes from
// its verified certificate; node metadata that disagrees is refused before
// anything is sent, and counted.
func TestAuthenticatedStreams(t *testing.T) {
	ca := newTestCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	data, err := os.ReadFile("testdata/protocol.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := file.Parse("testdata/protocol.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := NewMetrics(prometheus.NewRegistry())
	srv := NewServer(ctx, Options{Metrics: m})
	if err := srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	serverCert := ca.leaf(t, "spiffe://cluster.local/ns/horizon-system/sa/horizon")
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
	})))
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()

	tests := []struct {
		name     string
		id       string
		meta     []string // NAMESPACE, SERVICE_ACCOUNT
		wantCode codes.Code
	}{
		{"claims match the certificate", "spiffe://cluster.local/ns/demo/sa/echo", []string{MetaNamespace, "demo", MetaServiceAccount, "echo"}, codes.OK},
		{"claims left out are taken from the certificate", "spiffe://cluster.local/ns/demo/sa/echo", nil, codes.OK},
		{"forged namespace", "spiffe://cluster.local/ns/demo/sa/echo", []string{MetaNamespace, "payments", MetaServiceAccount, "echo"}, codes.PermissionDenied},
		{"forged service account", "spiffe://cluster.local/ns/demo/sa/echo", []string{MetaServiceAccount, "admin"}, codes.PermissionDenied},
		{"not a workload identity", "spiffe://cluster.local/gateway", nil, codes.Unauthenticated},
		{"another trust domain", "spiffe://evil.example/ns/demo/sa/echo", nil, codes.Unauthenticated},
	}
	refused := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := ca.leaf(t, tt.id)
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
				Certificates: []tls.Certificate{client}, RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13,
			})))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			stream, err := discoverypb.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&discoverypb.DiscoveryRequest{Node: node("p-"+tt.name, "east-1", tt.meta...), TypeUrl: resourcev3.ClusterType}); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
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
