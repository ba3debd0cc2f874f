package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certpb"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
)

// saToken creates a ServiceAccount in a member cluster and a projected-style
// token for it with the audience.
func saToken(t *testing.T, c *kubetest.Cluster, ns, sa, audience string) string {
	t.Helper()
	ctx := t.Context()
	c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	c.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
	tr, err := c.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestE2EKubernetesCertificates: with real API servers, a workload's
// ServiceAccount token obtains an SVID for that account and no other,
// signed by its own cluster's intermediate; a token from one member cannot
// claim another; refusals are counted; and the SVID so obtained is what the
// mutual-TLS xDS port on the same address asks for.
func TestE2EKubernetesCertificates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two kube-apiservers")
	}
	cl := kubetest.Start(t, "east", "west")
	east, west := cl[0], cl[1]
	kubeSeed(t, east, "echo", true, "10.0.1.1")
	kubeGateway(t, east, "net-east", "198.51.100.1")
	cartToken := saToken(t, east, "shop", "cart", "horizon")
	frontToken := saToken(t, west, "shop", "front", "horizon")
	otherAudience := saToken(t, east, "shop", "cart", "kubernetes")
	saToken(t, east, "kube-system", "admin", "horizon")
	// Horizon's own ServiceAccount, as any member cluster may have it.
	horizonToken := saToken(t, west, "horizon-system", "horizon", "horizon")

	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root := certtest.Root(t, td)
	eastCA, err := root.NewIntermediate("east")
	if err != nil {
		t.Fatal(err)
	}
	westCA, err := root.NewIntermediate("west")
	if err != nil {
		t.Fatal(err)
	}
	caDir := t.TempDir()
	for dir, ca := range map[string]*certs.CA{caDir: root, filepath.Join(caDir, "east"): eastCA, filepath.Join(caDir, "west"): westCA} {
		files, err := ca.Files()
		if err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteFiles(dir, files, true); err != nil {
			t.Fatal(err)
		}
	}
	bundleFile := filepath.Join(caDir, certs.RootCertFile)

	args := []string{"--ca-dir", caDir}
	for _, c := range cl {
		args = append(args, "--member", fmt.Sprintf("name=%s,network=net-%s,kubeconfig=%s", c.Name, c.Name, adminKubeconfigFile(t, c.Config)))
	}
	mtls := freeLoopbackAddr(t)
	args = append(args, "--mtls-address", mtls)
	bin := buildHorizon(t)
	h := startHorizon(t, bin, args...)

	agent := func(out, tokenFile, cluster string) (string, error) {
		cmd := exec.Command(bin, "agent", "--once", "--address", mtls, "--ca-bundle", bundleFile,
			"--token-file", tokenFile, "--cluster", cluster, "--out", out)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}

	// The token obtains its own account's SVID, from east's intermediate.
	out := filepath.Join(t.TempDir(), "certs")
	if log, err := agent(out, writeTemp(t, "token", cartToken), "east"); err != nil {
		t.Fatalf("horizon agent: %v\n%s", err, log)
	}
	svid := readSVID(t, out)
	if svid.ID.String() != "spiffe://cluster.local/ns/shop/sa/cart" {
		t.Fatalf("SVID for %s", svid.ID)
	}
	if len(svid.Certificates) != 2 || !svid.Certificates[1].Equal(eastCA.Certificate()) {
		t.Fatal("the SVID is not signed by east's intermediate")
	}

	// A workload of west gets its SVID from west's intermediate, and the two
	// agents' certificates carry gRPC mutual TLS across the intermediates.
	westOut := filepath.Join(t.TempDir(), "certs")
	if log, err := agent(westOut, writeTemp(t, "token", frontToken), "west"); err != nil {
		t.Fatalf("horizon agent in west: %v\n%s", err, log)
	}
	front := readSVID(t, westOut)
	if front.ID.String() != "spiffe://cluster.local/ns/shop/sa/front" || !front.Certificates[1].Equal(westCA.Certificate()) {
		t.Fatalf("west's SVID: %s", front.ID)
	}
	seen := grpcMTLS(t, svid, front, root.Bundle())
	if seen != front.ID.String() {
		t.Fatalf("the server saw %q, want the client's SPIFFE ID %s", seen, front.ID)
	}
	// A certificate from a foreign root, same trust domain, same names:
	// the handshake fails.
	foreignRoot := certtest.Root(t, td)
	forgedSVID := certtest.SVID(t, foreignRoot, front.ID.String())
	if seen := grpcMTLS(t, svid, forgedSVID, root.Bundle()); seen != "" {
		t.Fatalf("a client from a foreign root was served as %s", seen)
	}

	// It cannot claim another cluster, another audience, or be forged.
	for _, tc := range []struct {
		name, token, cluster string
	}{
		{"east's token claiming west", cartToken, "west"},
		{"token for another audience", otherAudience, "east"},
		{"forged token", "eyJhbGciOiJub25lIn0.e30.", "east"},
		{"unknown cluster", cartToken, "north"},
	} {
		dir := filepath.Join(t.TempDir(), "certs")
		if log, err := agent(dir, writeTemp(t, "token", tc.token), tc.cluster); err == nil {
			t.Errorf("%s: an SVID was issued:\n%s", tc.name, log)
		}
		if _, err := os.Stat(filepath.Join(dir, certs.SVIDFile)); err == nil {
			t.Errorf("%s: files written", tc.name)
		}
	}

	// Whatever a CSR asks for, the token decides: cart asking for admin
	// gets cart.
	bundle := root.Bundle()
	server := spiffeid.RequireFromString("spiffe://cluster.local/ns/horizon-system/sa/horizon")
	conn, err := grpc.NewClient(mtls, grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(server)))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, _ := certs.GenerateKey()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		URIs: []*url.URL{spiffeid.RequireFromString("spiffe://cluster.local/ns/kube-system/sa/admin").URL()},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+cartToken)
	resp, err := certpb.NewCertificatesClient(conn).Sign(ctx, &certpb.SignRequest{Csr: csr, Cluster: "east"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.SpiffeId != "spiffe://cluster.local/ns/shop/sa/cart" {
		t.Fatalf("a CSR for admin got %s", resp.SpiffeId)
	}

	// No member's token for horizon-system/horizon gets Horizon's own
	// identity, the one agents and proxies check on this port. A refused
	// client hears the reason and a fixed hint, not the API server's words.
	sign := func(token, cluster string) error {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
		resp, err := certpb.NewCertificatesClient(conn).Sign(ctx, &certpb.SignRequest{Csr: csr, Cluster: cluster})
		if err == nil {
			t.Errorf("issued %s", resp.SpiffeId)
		}
		return err
	}
	if err := sign(horizonToken, "west"); status.Code(err) != codes.PermissionDenied || !strings.HasPrefix(status.Convert(err).Message(), "reserved_identity: ") {
		t.Errorf("west's token for Horizon's own account: %v, want PermissionDenied reserved_identity", err)
	}
	if msg := status.Convert(sign(otherAudience, "east")).Message(); msg != "token_rejected: the member cluster does not accept the token" {
		t.Errorf("a token for another audience was told %q", msg)
	}

	// The SVID opens an authenticated xDS stream for its own namespace only;
	// no certificate, no xDS.
	ads := func(client *x509svid.SVID, namespace string) error {
		cfg := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(server))
		if client != nil {
			cfg = tlsconfig.MTLSClientConfig(client, bundle, tlsconfig.AuthorizeID(server))
		}
		conn, err := grpc.NewClient(mtls, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = xdstest.Fetch(t, conn, &discoverypb.DiscoveryRequest{
			Node: xdstest.Node("cart-1", "CLUSTER_ID", "east", "NAMESPACE", namespace, "SERVICE_ACCOUNT", "cart"), TypeUrl: resourcev3.ClusterType,
		})
		return err
	}
	if err := ads(svid, "shop"); err != nil {
		t.Fatalf("xDS with the issued SVID: %v", err)
	}
	if err := ads(svid, "payments"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("forged NAMESPACE: %v, want PermissionDenied", err)
	}
	if err := ads(nil, "shop"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("xDS without a certificate: %v, want Unauthenticated", err)
	}

	// Every refusal was counted by reason. The API server itself refuses a
	// token for another audience when it is asked with Horizon's.
	metrics := scrape(t, h)
	for _, want := range []string{
		`horizon_certs_api_refusals_total{reason="token_rejected"} 4`,
		`horizon_certs_api_refusals_total{reason="unknown_cluster"} 1`,
		`horizon_certs_api_refusals_total{reason="reserved_identity"} 1`,
		`horizon_certs_api_issued_total{method="token"} 3`,
		`horizon_certs_expiry_timestamp_seconds{cluster="east",kind="intermediate"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func scrape(t *testing.T, h *horizonProcess) string {
	t.Helper()
	resp, err := h.http.Get("http://" + h.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readSVID(t *testing.T, dir string) *x509svid.SVID {
	t.Helper()
	certPEM, _ := os.ReadFile(filepath.Join(dir, certs.SVIDFile))
	keyPEM, _ := os.ReadFile(filepath.Join(dir, certs.SVIDKeyFile))
	svid, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

// grpcMTLS serves gRPC health with server's SVID, calls it with client's,
// both trusting bundle, and returns the SPIFFE ID the server saw ("" if
// the call failed).
func grpcMTLS(t *testing.T, server, client *x509svid.SVID, bundle *x509bundle.Bundle) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 1)
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsconfig.MTLSServerConfig(server, bundle, tlsconfig.AuthorizeMemberOf(bundle.TrustDomain())))))
	healthpb.RegisterHealthServer(g, &peerIDHealth{seen: seen})
	go g.Serve(lis)
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(
		tlsconfig.MTLSClientConfig(client, bundle, tlsconfig.AuthorizeID(server.ID)))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		return ""
	}
	return <-seen
}

// peerIDHealth answers health checks and reports the caller's SPIFFE ID.
type peerIDHealth struct {
	healthpb.UnimplementedHealthServer
	seen chan string
}

func (h *peerIDHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	id, err := tlsPeerID(ctx)
	if err != nil {
		return nil, err
	}
	h.seen <- id
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func tlsPeerID(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return "", status.Error(codes.Unauthenticated, "no client certificate")
	}
	id, err := x509svid.IDFromCert(info.State.PeerCertificates[0])
	if err != nil {
		return "", status.Error(codes.Unauthenticated, err.Error())
	}
	return id.String(), nil
}
