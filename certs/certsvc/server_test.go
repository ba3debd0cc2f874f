package certsvc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certpb"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// csrFor is a certificate request that asks for id in its URI SAN: the
// server must ignore what a request asks for.
func csrFor(t testing.TB, id string) []byte {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	if id != "" {
		tmpl.URIs = append(tmpl.URIs, spiffeid.RequireFromString(id).URL())
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// tlsCtx is a request context as the TLS port makes it: a peer with the
// client's certificates (none for a token caller) and metadata.
func tlsCtx(chain []*x509.Certificate, md ...string) context.Context {
	ctx := peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: chain}},
	})
	if len(md) > 0 {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(md...))
	}
	return ctx
}

func TestSign(t *testing.T) {
	rootA, err := certs.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	west, err := rootA.NewIntermediate("west")
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := certs.NewRoot(td)
	key, _ := certs.GenerateKey()
	workload := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/cart")
	current, err := west.Issue(key.Public(), workload, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := foreign.Issue(key.Public(), workload, time.Hour)

	m := NewMetrics(nil)
	var reviewed []string
	srv, err := New(Config{
		TrustDomain: td,
		Signer: func(cluster string) (*certs.CA, error) {
			if cluster == "west" || cluster == "" {
				return west, nil
			}
			return nil, errors.New("no CA")
		},
		Review: func(_ context.Context, cluster, token string) (string, string, error) {
			reviewed = append(reviewed, cluster+"/"+token)
			switch {
			case cluster != "west":
				return "", "", &Denied{Reason: ReasonUnknownCluster, Err: errors.New("no member " + cluster)}
			case token == "down":
				return "", "", errors.New("connection refused")
			case token != "good":
				return "", "", &Denied{Reason: ReasonTokenRejected, Err: errors.New("rejected")}
			}
			return "shop", "cart", nil
		},
		Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		ctx    context.Context
		req    *certpb.SignRequest
		code   codes.Code
		reason string // refusal counted, or "" for an issuance
		method string
	}{
		{"token", tlsCtx(nil, "authorization", "Bearer good"),
			&certpb.SignRequest{Csr: csrFor(t, "spiffe://cluster.local/ns/kube-system/sa/admin"), Cluster: "west"}, codes.OK, "", MethodToken},
		{"renewal", tlsCtx(current.Certificates), &certpb.SignRequest{Csr: csrFor(t, "")}, codes.OK, "", MethodRenewal},
		{"plaintext", peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{}}),
			&certpb.SignRequest{Csr: csrFor(t, "")}, codes.Unauthenticated, ReasonPlaintext, ""},
		{"no credential", tlsCtx(nil), &certpb.SignRequest{Csr: csrFor(t, "")}, codes.Unauthenticated, ReasonNoCredential, ""},
		{"basic auth is no token", tlsCtx(nil, "authorization", "Basic good"), &certpb.SignRequest{Csr: csrFor(t, "")}, codes.Unauthenticated, ReasonNoCredential, ""},
		{"token without cluster", tlsCtx(nil, "authorization", "Bearer good"), &certpb.SignRequest{Csr: csrFor(t, "")}, codes.InvalidArgument, ReasonUnknownCluster, ""},
		{"token for another cluster", tlsCtx(nil, "authorization", "Bearer good"), &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "east"}, codes.InvalidArgument, ReasonUnknownCluster, ""},
		{"forged token", tlsCtx(nil, "authorization", "Bearer forged"), &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "west"}, codes.Unauthenticated, ReasonTokenRejected, ""},
		{"member down", tlsCtx(nil, "authorization", "Bearer down"), &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "west"}, codes.Unavailable, ReasonReviewFailed, ""},
		{"certificate of a foreign root", tlsCtx(stranger.Certificates), &certpb.SignRequest{Csr: csrFor(t, "")}, codes.Unauthenticated, ReasonBadCertificate, ""},
		{"garbage CSR", tlsCtx(current.Certificates), &certpb.SignRequest{Csr: []byte("nope")}, codes.InvalidArgument, ReasonBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before float64
			if tc.reason != "" {
				before = testutil.ToFloat64(m.Refused(tc.reason))
			}
			resp, err := srv.Sign(tc.ctx, tc.req)
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code %v (%v), want %v", got, err, tc.code)
			}
			if tc.reason != "" {
				if got := testutil.ToFloat64(m.Refused(tc.reason)); got != before+1 {
					t.Errorf("refusals{%s} %v -> %v", tc.reason, before, got)
				}
				return
			}
			leaf, err := x509.ParseCertificate(resp.CertChain[0])
			if err != nil {
				t.Fatal(err)
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != workload.String() || resp.SpiffeId != workload.String() {
				t.Errorf("issued %v (%s), want %s whatever the CSR asked", leaf.URIs, resp.SpiffeId, workload)
			}
			if len(resp.CertChain) != 2 || len(resp.Bundle) != 1 {
				t.Errorf("chain of %d and bundle of %d, want SVID+intermediate and the root", len(resp.CertChain), len(resp.Bundle))
			}
		})
	}
	if got := testutil.ToFloat64(m.Issued(MethodToken)) + testutil.ToFloat64(m.Issued(MethodRenewal)); got != 2 {
		t.Errorf("issued %v, want 2", got)
	}
}
