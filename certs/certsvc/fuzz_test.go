package certsvc

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certpb"
)

// FuzzSign sends the certificate API any request a token caller can make:
// any bytes as the certificate request, any cluster, token and ttl.
// Properties: no panic; a refusal is a gRPC status with an error code and
// never carries what the fixture's members and CA store keep internal; an
// SVID is issued only for the token's identity (never a name the request
// asks for), to the request's key, verifies against the root, and lives no
// longer than the server's maximum.
func FuzzSign(f *testing.F) {
	fx := newFixture(f)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	edCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, edKey)
	if err != nil {
		f.Fatal(err)
	}
	ec := csrFor(f, "spiffe://cluster.local/ns/kube-system/sa/admin")
	for _, tok := range []string{"cart", "horizon", "slash", "rejected", "down", "unknown"} {
		f.Add(ec, "east", tok, int64(3600))
	}
	f.Add(edCSR, "west", "cart", int64(0))
	f.Add(edCSR, "broken", "cart", int64(-1))
	f.Add(ec[:len(ec)-8], "", "cart", int64(1)<<40)
	f.Fuzz(func(t *testing.T, csr []byte, cluster, token string, ttl int64) {
		fx.log.mu.Lock()
		fx.log.lines = nil // the audit log of every issuance would grow without bound
		fx.log.mu.Unlock()
		resp, err := fx.srv.Sign(withToken(token), &certpb.SignRequest{
			Csr: csr, Cluster: cluster, Ttl: durationpb.New(time.Duration(ttl) * time.Second),
		})
		if err != nil {
			st, ok := status.FromError(err)
			if !ok || st.Code() == codes.OK || st.Code() == codes.Unknown {
				t.Fatalf("refusal %v: want a gRPC status with a code", err)
			}
			if strings.Contains(st.Message(), internal) && !strings.Contains(cluster+token, internal) {
				t.Fatalf("refusal leaks internal detail: %s", st.Message())
			}
			return
		}
		if token != "cart" {
			t.Fatalf("token %q got an SVID for %s", token, resp.SpiffeId)
		}
		var chain []*x509.Certificate
		for _, der := range resp.CertChain {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			chain = append(chain, c)
		}
		id, _, err := certs.VerifyChain(chain, fx.root.Bundle(), fx.clock())
		if err != nil || id != cartID || resp.SpiffeId != cartID.String() {
			t.Fatalf("issued %s (%s): %v, want %s", id, resp.SpiffeId, err, cartID)
		}
		req, err := x509.ParseCertificateRequest(csr)
		if err != nil {
			t.Fatalf("issued for an unparseable request: %v", err)
		}
		if !bytes.Equal(chain[0].RawSubjectPublicKeyInfo, req.RawSubjectPublicKeyInfo) {
			t.Fatal("the SVID's key is not the request's")
		}
		if life := chain[0].NotAfter.Sub(chain[0].NotBefore); life > fx.srv.cfg.MaxTTL+certs.ClockSkew+time.Second {
			t.Fatalf("lives %v, max %v", life, fx.srv.cfg.MaxTTL)
		}
	})
}
