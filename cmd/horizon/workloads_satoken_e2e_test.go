package main

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/workloadpb"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// TestE2EWorkloadServiceAccountToken runs `horizon serve --member east
// --ca-dir --workloads FILE` against a real kube-apiserver, and `horizon
// agent --join-token-file` with a ServiceAccount token minted by the
// TokenRequest API with Horizon's audience: the VM joins the group that
// names east as its tokenReviewCluster, gets the group's SVID, and is an
// endpoint in the VM network's view. Through the real TokenReview, a token
// of another ServiceAccount is refused identity_mismatch, a token without
// Horizon's audience token_rejected, and a group without a
// tokenReviewCluster refuses the group's own token with sa_token_off; each
// is counted.
func TestE2EWorkloadServiceAccountToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver, builds and runs horizon serve and horizon agent")
	}
	east := kubetest.Start(t, "east")[0]
	kubeSeed(t, east, "echo", true, "10.0.1.1")
	kubeGateway(t, east, "net-east", "198.51.100.1")
	reviewsToken := saToken(t, east, "shop", "reviews", DefaultTokenAudience)
	ratingsToken := saToken(t, east, "shop", "ratings", DefaultTokenAudience)
	otherAudience := saToken(t, east, "shop", "reviews", "kubernetes")

	dir := t.TempDir()
	data, err := os.ReadFile("testdata/workloads/satoken.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wf := filepath.Join(dir, "workloads.yaml")
	os.WriteFile(wf, data, 0o644)
	caDir := filepath.Join(dir, "ca")
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	files, err := certtest.Root(t, td).Files()
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteFiles(caDir, files, true); err != nil {
		t.Fatal(err)
	}
	bundleFile := filepath.Join(caDir, certs.RootCertFile)

	bin := buildHorizon(t)
	mtls := freeLoopbackAddr(t)
	h := startHorizon(t, bin, "--member", fmt.Sprintf("name=east,network=net-east,kubeconfig=%s", adminKubeconfigFile(t, east.Config)),
		"--workloads", wf, "--ca-dir", caDir, "--mtls-address", mtls, "--gateway-probe-interval", "0", "--workload-report-interval", "200ms")
	// The member is synced once its service is in a view.
	waitEDS(t, h, "east", "outbound_.7070_._.echo.demo.svc.clusterset.local", map[string]string{"10.0.1.1:7070": "1@0"})

	// The VM's agent joins with the ServiceAccount token in its token file.
	tokenFile := writeTemp(t, "sa.token", reviewsToken+"\n")
	certDir := filepath.Join(dir, "vm-certs")
	agent := exec.Command(bin, "agent", "--mtls-address", mtls, "--ca-bundle", bundleFile, "--cert-dir", certDir,
		"--join-token-file", tokenFile, "--workload-group", "shop/reviews-vms", "--workload-address", "10.9.0.5")
	agentOut := &testkit.Buffer{}
	agent.Stdout, agent.Stderr = agentOut, agentOut
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan struct{})
	go func() { agent.Wait(); close(agentDone) }()
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		<-agentDone
		if t.Failed() {
			t.Logf("horizon agent:\n%s", agentOut)
		}
	})
	name := discovery.ClusterName(discovery.Host(discovery.ServiceKey{Namespace: "shop", Name: "reviews"}, discovery.ClusterSetWide), 8080)
	testkit.Eventually(t, e2eWait, "the VM in vm-net's view", func() error {
		got, err := edsHealth(t, h.xdsAddr, "vm-net", name)
		if err == nil && got["10.9.0.5:8080"] != "HEALTHY" {
			err = fmt.Errorf("vm-net's view %v: no ready 10.9.0.5:8080", got)
		}
		return err
	})
	testkit.Eventually(t, e2eWait, "the agent's SVID in its directory", func() error {
		certPEM, _ := os.ReadFile(filepath.Join(certDir, certs.SVIDFile))
		keyPEM, _ := os.ReadFile(filepath.Join(certDir, certs.SVIDKeyFile))
		svid, err := x509svid.Parse(certPEM, keyPEM)
		if err == nil && svid.ID.String() != "spiffe://cluster.local/ns/shop/sa/reviews" {
			t.Fatalf("the agent's SVID is %s, want the group's ServiceAccount", svid.ID)
		}
		return err
	})

	// Refusals, through the real TokenReview of east.
	bundle, err := x509bundle.Load(td, bundleFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+mtls, grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeMemberOf(td)))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	join := func(token, group string) error {
		key, err := certs.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "vm"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
		_, err = workloadpb.NewWorkloadsClient(conn).Join(ctx, &workloadpb.JoinRequest{Csr: csr, Group: group, Address: "10.9.0.6"})
		return err
	}
	for _, c := range []struct {
		name, token, group, reason string
		code                       codes.Code
	}{
		{"a token of another ServiceAccount", ratingsToken, "shop/reviews-vms", "identity_mismatch", codes.PermissionDenied},
		// A TokenReview that asks for Horizon's audience does not
		// authenticate a token for another: the API server answers
		// authenticated: false (token_audience is for a member that
		// authenticates it and names other audiences).
		{"a token without Horizon's audience", otherAudience, "shop/reviews-vms", "token_rejected", codes.Unauthenticated},
		{"a group without tokenReviewCluster", reviewsToken, "shop/plain-vms", "sa_token_off", codes.PermissionDenied},
	} {
		err := join(c.token, c.group)
		if status.Code(err) != c.code || !strings.HasPrefix(status.Convert(err).Message(), c.reason+":") {
			t.Errorf("%s: err = %v, want %s %s", c.name, err, c.code, c.reason)
		}
	}
	resp, err := h.http.Get("http://" + h.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, reason := range []string{"identity_mismatch", "token_rejected", "sa_token_off"} {
		if want := `horizon_workload_refusals_total{reason="` + reason + `"} 1`; !strings.Contains(string(body), want) {
			t.Errorf("metrics: no %s", want)
		}
	}
	got, err := edsHealth(t, h.xdsAddr, "vm-net", name)
	if err != nil || got["10.9.0.6:8080"] != "" {
		t.Errorf("a refused join is in vm-net's view: %v (%v)", got, err)
	}
}
