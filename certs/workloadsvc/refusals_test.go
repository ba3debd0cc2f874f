package workloadsvc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/workloadpb"
)

// client calls the API directly: with a token, a client certificate, both
// or neither.
type client struct {
	t    *testing.T
	h    *horizon
	svid *x509svid.SVID
}

func (c client) conn() workloadpb.WorkloadsClient {
	c.t.Helper()
	conf := &tls.Config{InsecureSkipVerify: true} // the server's identity is not what these tests are about
	if c.svid != nil {
		conf.GetClientCertificate = tlsconfig.GetClientCertificate(c.svid)
	}
	conn, err := grpc.NewClient("passthrough:///"+c.h.addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return workloadpb.NewWorkloadsClient(conn)
}

func withToken(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// join joins with a fresh key and returns the SVID.
func (c client) join(ctx context.Context, group, address string) (*x509svid.SVID, error) {
	key, err := certs.GenerateKey()
	if err != nil {
		c.t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "vm"}}, key)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.conn().Join(ctx, &workloadpb.JoinRequest{Csr: csr, Group: group, Address: address})
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	for _, der := range resp.GetCertChain() {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			c.t.Fatal(err)
		}
		chain = append(chain, cert)
	}
	return (&certs.SVID{Certificates: chain, ID: mustID(c.t, resp.GetSpiffeId())}).WithKey(key)
}

func (c client) report(group, address string, healthy bool) error {
	_, err := c.conn().Report(context.Background(), &workloadpb.ReportRequest{Group: group, Address: address, Healthy: healthy})
	return err
}

// TestRefusals: expired, foreign and other groups' tokens, a VM claiming
// another group's identity, and calls without a credential are refused
// with their reason and counted, over mutual TLS; nothing in the views
// changes.
func TestRefusals(t *testing.T) {
	h := startHorizon(t, 1)
	before := h.cs().Version()
	anon := client{t: t, h: h}

	foreignKey := make([]byte, 32)
	rand.Read(foreignKey)
	foreign, _ := IssueToken(foreignKey, td.Name(), "shop/ratings-vms", time.Hour, time.Now())
	otherTD, _ := IssueToken(h.key, "other.example", "shop/ratings-vms", time.Hour, time.Now())
	expired, _ := IssueToken(h.key, td.Name(), "shop/ratings-vms", time.Minute, time.Now().Add(-time.Hour))

	// A VM of billing-vms joins properly: its SVID is billing's identity.
	billing, err := anon.join(withToken(h.token(t, "shop/billing-vms", time.Hour)), "", "10.2.0.50")
	if err != nil {
		t.Fatal(err)
	}
	if billing.ID.String() != "spiffe://cluster.local/ns/shop/sa/billing" {
		t.Fatalf("billing SVID %s", billing.ID)
	}
	asBilling := client{t: t, h: h, svid: billing}
	// Its own report is taken (once MinReportGap after the join has
	// passed: a report sooner is refused as rate_limited).
	for {
		err := asBilling.report("shop/billing-vms", "10.2.0.50", true)
		if err == nil {
			break
		}
		if !containsReason(err, "rate_limited") {
			t.Fatalf("billing's own report: %v", err)
		}
		time.Sleep(h.reg.MinReportGap())
	}
	// A VM of inventory-vms, which lists no addresses, registers the
	// address it connects from.
	if _, err := anon.join(withToken(h.token(t, "shop/inventory-vms", time.Hour)), "", "127.0.0.1"); err != nil {
		t.Fatalf("inventory joins at the address it connects from: %v", err)
	}
	afterBilling := h.cs().Version()

	cases := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
	}{
		{"expired token", func() error { _, err := anon.join(withToken(expired), "", "10.2.0.5"); return err }, codes.Unauthenticated, ReasonTokenExpired},
		{"foreign token", func() error { _, err := anon.join(withToken(foreign), "", "10.2.0.5"); return err }, codes.Unauthenticated, ReasonTokenForeign},
		{"token of another trust domain", func() error { _, err := anon.join(withToken(otherTD), "", "10.2.0.5"); return err }, codes.Unauthenticated, ReasonTokenForeign},
		{"not a token", func() error { _, err := anon.join(withToken("hzjoin.v1.e30.AAAA"), "", "10.2.0.5"); return err }, codes.Unauthenticated, ReasonTokenForeign},
		{"no credential", func() error { _, err := anon.join(context.Background(), "shop/ratings-vms", "10.2.0.5"); return err }, codes.Unauthenticated, ReasonNoCertificate},
		{"token of another group", func() error {
			_, err := anon.join(withToken(h.token(t, "shop/billing-vms", time.Hour)), "shop/ratings-vms", "10.2.0.5")
			return err
		}, codes.PermissionDenied, ReasonTokenGroup},
		{"join as another group with an SVID", func() error {
			_, err := asBilling.join(context.Background(), "shop/ratings-vms", "10.2.0.5")
			return err
		}, codes.PermissionDenied, ReasonIdentityMismatch},
		{"report as another group", func() error { return asBilling.report("shop/ratings-vms", "10.2.0.50", true) }, codes.PermissionDenied, ReasonIdentityMismatch},
		{"a group with Horizon's own identity", func() error {
			_, err := anon.join(withToken(h.token(t, "horizon-system/sneaky", time.Hour)), "", "10.2.0.77")
			return err
		}, codes.PermissionDenied, ReasonReserved},
		{"report without a certificate", func() error { return anon.report("shop/billing-vms", "10.2.0.50", false) }, codes.Unauthenticated, ReasonNoCertificate},
		{"report for an address not joined", func() error { return asBilling.report("shop/billing-vms", "10.2.0.51", true) }, codes.NotFound, "not_registered"},
		// The address is a claim: a token holder cannot register another
		// workload's address (one it does not connect from, outside the
		// group's addresses).
		{"join at an address it does not connect from", func() error {
			_, err := anon.join(withToken(h.token(t, "shop/inventory-vms", time.Hour)), "", "10.0.0.2")
			return err
		}, codes.PermissionDenied, ReasonAddressClaim},
		{"join outside the group's addresses", func() error {
			_, err := anon.join(withToken(h.token(t, "shop/billing-vms", time.Hour)), "", "10.2.0.60")
			return err
		}, codes.PermissionDenied, ReasonAddressClaim},
		{"report for an address outside the group's addresses", func() error { return asBilling.report("shop/billing-vms", "10.2.0.99", true) }, codes.PermissionDenied, ReasonAddressClaim},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := testutil.ToFloat64(h.metrics.RefusalsFor(c.reason))
			err := c.call()
			if status.Code(err) != c.code || !containsReason(err, c.reason) {
				t.Fatalf("err = %v, want %s %s", err, c.code, c.reason)
			}
			if got := testutil.ToFloat64(h.metrics.RefusalsFor(c.reason)); got != n+1 {
				t.Errorf("refusals{reason=%s} = %v, want %v", c.reason, got, n+1)
			}
		})
	}
	if got := h.cs().Version(); got != afterBilling || got == before {
		t.Errorf("the refusals changed the ClusterSet: version %s, want %s", got, afterBilling)
	}
	if e, ok := vmEndpoint(h.cs(), "10.2.0.5"); ok {
		t.Errorf("a refused join registered %+v", e)
	}
	for _, in := range h.reg.Instances() {
		if in.Address != "10.2.0.50" && in.Address != "127.0.0.1" {
			t.Errorf("a refused join registered %+v", in)
		}
	}
}

func containsReason(err error, reason string) bool {
	s, _ := status.FromError(err)
	return len(s.Message()) >= len(reason) && s.Message()[:len(reason)] == reason
}
