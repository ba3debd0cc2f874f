package certsvc

import (
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certpb"
)

// Horizon's own identity is what agents and proxies check on the
// mutual-TLS port: no member cluster's token for horizon-system/horizon, and
// no certificate for it, gets it from the API. Horizon's own SVID (Self)
// is still issued.
func TestReservedIdentityIsNeverIssued(t *testing.T) {
	f := newFixture(t)
	self := NewSelf(horizonID, time.Hour, func() (*certs.CA, error) { return f.root, nil }, f.clock)
	own, err := self.GetX509SVID()
	if err != nil || own.ID != horizonID {
		t.Fatalf("Horizon's own SVID: %v %v", own, err)
	}
	for _, c := range []struct {
		name    string
		cluster string
		chain   []*x509.Certificate // renewal, or a token caller if nil
	}{
		{"token from east", "east", nil},
		{"token from a cluster the root signs for", "north", nil},
		{"renewal of Horizon's own SVID", "", own.Certificates},
		{"renewal of an SVID for it from east's intermediate", "", svidFrom(t, f.east, horizonID)},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.advance(refusalLogEvery) // so that this refusal is logged
			ctx := withToken("horizon")
			if c.chain != nil {
				ctx = withSVID(c.chain)
			}
			before := testutil.ToFloat64(f.metrics.Refused(ReasonReserved))
			resp, err := f.srv.Sign(ctx, &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: c.cluster})
			if status.Code(err) != codes.PermissionDenied || !strings.HasPrefix(status.Convert(err).Message(), ReasonReserved+": ") {
				t.Fatalf("Sign: %v %v, want PermissionDenied for %s", resp.GetSpiffeId(), err, ReasonReserved)
			}
			if got := testutil.ToFloat64(f.metrics.Refused(ReasonReserved)); got != before+1 {
				t.Errorf("refusals{%s} %v -> %v", ReasonReserved, before, got)
			}
			lines := f.log.take("certificate request refused")
			if len(lines) != 1 || lines[0].attrs["reason"] != ReasonReserved || !strings.Contains(lines[0].attrs["error"], horizonID.String()) {
				t.Errorf("logged %+v, want one refusal naming %s", lines, horizonID)
			}
		})
	}
	// Only the reserved ID: the same token channel still serves others.
	f.sign(t, withToken("cart"), "east", cartID)
	if again, err := self.GetX509SVID(); err != nil || again.ID != horizonID {
		t.Errorf("Horizon's own SVID after the refusals: %v", err)
	}
}

// A renewing caller's cluster is read from the chain that verified, not the
// one it presented: east's SVID with west's (public) intermediate spliced in
// before east's is renewed by east's intermediate.
func TestRenewalReadsTheVerifiedChain(t *testing.T) {
	f := newFixture(t)
	east := svidFrom(t, f.east, cartID)
	spliced := []*x509.Certificate{east[0], f.west.Certificate(), f.east.Certificate()}
	got := f.sign(t, withSVID(spliced), "", cartID)
	if len(got.chain) != 2 || !got.chain[1].Equal(f.east.Certificate()) {
		t.Errorf("renewed by %q, want east's intermediate", got.chain[len(got.chain)-1].Issuer)
	}
	if got.cluster != "east" {
		t.Errorf("renewed SVID bound to %q, want east", got.cluster)
	}
	// West's intermediate alone does not verify east's leaf at all.
	_, err := f.srv.Sign(withSVID([]*x509.Certificate{east[0], f.west.Certificate()}), &certpb.SignRequest{Csr: csrFor(t, "")})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("east's leaf under west's intermediate: %v, want Unauthenticated", err)
	}
}

// An SVID the API issues is bound to the member cluster whose token it
// reviewed, whether a cluster's intermediate or the root signs it, and
// renewal keeps the binding. A cluster's intermediate binds its own leaves
// whatever they claim.
func TestSVIDsKeepTheirCluster(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name, cluster string
		signer        *certs.CA
	}{
		{"east's intermediate", "east", f.east},
		{"the root, for a cluster without an intermediate", "north", f.root},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := f.sign(t, withToken("cart"), c.cluster, cartID)
			if got.cluster != c.cluster {
				t.Fatalf("token of %s: SVID bound to %q", c.cluster, got.cluster)
			}
			if leaf := got.chain[0]; leaf.CheckSignatureFrom(c.signer.Certificate()) != nil {
				t.Errorf("signed by %q, want %q", leaf.Issuer, c.signer.Certificate().Subject)
			}
			for range 2 {
				got = f.sign(t, withSVID(got.chain), "", cartID)
				if got.cluster != c.cluster {
					t.Fatalf("renewed SVID bound to %q, want %s", got.cluster, c.cluster)
				}
			}
		})
	}

	t.Run("renewal of a leaf under east's intermediate that claims west", func(t *testing.T) {
		got := f.sign(t, withSVID(forge(t, f.east, cartID, "west")), "", cartID)
		if got.cluster != "east" || !got.chain[1].Equal(f.east.Certificate()) {
			t.Errorf("renewed SVID bound to %q by %q, want east's intermediate", got.cluster, got.chain[1].Subject)
		}
	})
	t.Run("renewal of an SVID the root issued for no cluster", func(t *testing.T) {
		got := f.sign(t, withSVID(svidFrom(t, f.root, cartID)), "", cartID)
		if got.cluster != "" || len(got.chain) != 1 || got.chain[0].Subject.String() != "O=SPIFFE" {
			t.Errorf("renewed SVID bound to %q, subject %q, want none", got.cluster, got.chain[0].Subject)
		}
	})
	t.Run("the CA store hands another cluster's intermediate", func(t *testing.T) {
		before := testutil.ToFloat64(f.metrics.Refused(ReasonNoCA))
		_, err := f.srv.Sign(withToken("cart"), &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "south"})
		if status.Code(err) != codes.Unavailable || testutil.ToFloat64(f.metrics.Refused(ReasonNoCA)) != before+1 {
			t.Errorf("south's token signed by west's intermediate: %v, want %s", err, ReasonNoCA)
		}
	})
}

// Every refusal tells the client its reason and a fixed hint, nothing of
// the error behind it (a member's or API server's words, CA names, files);
// the error goes to the log.
func TestRefusalsAreOpaque(t *testing.T) {
	f := newFixture(t)
	foreign, err := certs.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	badSig := csrFor(t, "")
	badSig[len(badSig)-1] ^= 0xff
	for i, c := range []struct {
		name    string
		md      []string // a token caller's metadata
		chain   []*x509.Certificate
		req     *certpb.SignRequest
		code    codes.Code
		message string
	}{
		{"no credential", nil, nil, &certpb.SignRequest{Csr: csrFor(t, "")}, codes.Unauthenticated,
			"no_credential: send a ServiceAccount token (authorization: Bearer) naming its member cluster, or connect with your current SVID"},
		{"garbage CSR", nil, svidFrom(t, f.east, cartID), &certpb.SignRequest{Csr: []byte("nope")}, codes.InvalidArgument,
			"bad_request: malformed certificate request or ttl"},
		{"CSR with a bad signature", nil, svidFrom(t, f.east, cartID), &certpb.SignRequest{Csr: badSig}, codes.InvalidArgument,
			"issue: the CA refused to sign the certificate request"},
		{"certificate of a foreign root", nil, svidFrom(t, foreign, cartID), &certpb.SignRequest{Csr: csrFor(t, "")}, codes.Unauthenticated,
			"bad_certificate: the client certificate is not a valid X509-SVID of this trust domain"},
		{"token without cluster", []string{"authorization", "Bearer cart"}, nil, &certpb.SignRequest{Csr: csrFor(t, "")}, codes.InvalidArgument,
			"unknown_cluster: name the member cluster the token is from, one Horizon knows"},
		{"unknown cluster", []string{"authorization", "Bearer unknown"}, nil, &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "north"}, codes.InvalidArgument,
			"unknown_cluster: name the member cluster the token is from, one Horizon knows"},
		{"rejected token", []string{"authorization", "Bearer rejected"}, nil, &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "east"}, codes.Unauthenticated,
			"token_rejected: the member cluster does not accept the token"},
		{"wrong audience", []string{"authorization", "Bearer audience"}, nil, &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "east"}, codes.Unauthenticated,
			"token_audience: the token is not for Horizon's audience"},
		{"not a ServiceAccount", []string{"authorization", "Bearer not-sa"}, nil, &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "east"}, codes.Unauthenticated,
			"not_service_account: the token is not a ServiceAccount's"},
		{"an account that makes no SPIFFE ID", []string{"authorization", "Bearer slash"}, nil, &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "east"}, codes.PermissionDenied,
			"not_service_account: the token is not a ServiceAccount's"},
		{"member down", []string{"authorization", "Bearer down"}, nil, &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "east"}, codes.Unavailable,
			"review_failed: the member cluster could not review the token; try again later"},
		{"no CA", []string{"authorization", "Bearer cart"}, nil, &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "broken"}, codes.Unavailable,
			"no_ca: no CA signs for the cluster now; try again later"},
		{"reserved identity", []string{"authorization", "Bearer horizon"}, nil, &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "east"}, codes.PermissionDenied,
			"reserved_identity: the identity is Horizon's own and never issued"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A peer of its own, so that no refusal's log line is held back.
			ctx := callFrom(fmt.Sprintf("10.2.0.%d:1", i+1), c.chain, c.md...)
			_, err := f.srv.Sign(ctx, c.req)
			st := status.Convert(err)
			if st.Code() != c.code || st.Message() != c.message {
				t.Errorf("refused %v %q,\nwant %v %q", st.Code(), st.Message(), c.code, c.message)
			}
			lines := f.log.take("certificate request refused")
			if len(lines) != 1 {
				t.Fatalf("%d refusal lines logged, want 1", len(lines))
			}
			detail := lines[0].attrs["error"]
			if detail == "" || strings.Contains(st.Message(), detail) {
				t.Errorf("logged error %q, and the client was told %q", detail, st.Message())
			}
			if strings.Contains(st.Message(), "INTERNAL") {
				t.Errorf("the client was told internals: %q", st.Message())
			}
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		_, err := f.srv.Sign(t.Context(), &certpb.SignRequest{Csr: csrFor(t, "")})
		if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "plaintext: the certificate API is served over mutual TLS only" {
			t.Errorf("refused %v %q", st.Code(), st.Message())
		}
	})
	t.Run("every reason has a hint", func(t *testing.T) {
		for _, r := range allReasons {
			if hints[r] == "" || strings.ContainsAny(hints[r], "%\n") {
				t.Errorf("reason %s: hint %q", r, hints[r])
			}
		}
	})
}

// The audit line of an issued SVID names who got what, how, and which CA
// signed it.
func TestIssuedAuditLog(t *testing.T) {
	f := newFixture(t)
	east := f.sign(t, withToken("cart"), "east", cartID)
	f.sign(t, withToken("cart"), "north", cartID)
	f.sign(t, withSVID(east.chain), "", cartID)
	lines := f.log.take("issued X509-SVID")
	want := []map[string]string{
		{"method": MethodToken, "cluster": "east", "peer": "10.1.0.1:40000",
			"signer_cluster": "east", "signer": f.east.Certificate().Subject.CommonName, "signer_fingerprint": certs.Fingerprint(f.east.Certificate())},
		{"method": MethodToken, "cluster": "north", "peer": "10.1.0.1:40000",
			"signer_cluster": "top", "signer": f.root.Certificate().Subject.CommonName, "signer_fingerprint": certs.Fingerprint(f.root.Certificate())},
		{"method": MethodRenewal, "cluster": "east", "peer": "10.1.0.2:40000",
			"signer_cluster": "east", "signer": f.east.Certificate().Subject.CommonName, "signer_fingerprint": certs.Fingerprint(f.east.Certificate())},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %+v", len(lines), len(want), lines)
	}
	for i, w := range want {
		w["id"] = cartID.String()
		for k, v := range w {
			if got := lines[i].attrs[k]; got != v {
				t.Errorf("line %d: %s=%q, want %q", i, k, got, v)
			}
		}
		if lines[i].attrs["serial"] == "" {
			t.Errorf("line %d names no serial", i)
		}
	}
}

// A client can make Horizon refuse as often as it likes: every refusal is
// counted, but a peer's refusals for one reason are logged once an
// interval, the next line saying how many were held back.
func TestRefusalLogIsRateLimited(t *testing.T) {
	f := newFixture(t)
	for i := range 20 {
		f.srv.Sign(callFrom(fmt.Sprintf("10.3.0.1:%d", 40000+i), nil), &certpb.SignRequest{Csr: csrFor(t, "")})
	}
	f.srv.Sign(callFrom("10.3.0.2:1", nil), &certpb.SignRequest{Csr: csrFor(t, "")})
	f.srv.Sign(withToken("rejected"), &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: "east"})
	if got := testutil.ToFloat64(f.metrics.Refused(ReasonNoCredential)); got != 21 {
		t.Errorf("refusals{no_credential} %v, want 21", got)
	}
	if lines := f.log.take("certificate request refused"); len(lines) != 3 {
		t.Fatalf("%d lines for 21 refusals from two peers and another reason, want 3: %+v", len(lines), lines)
	}
	f.advance(refusalLogEvery)
	f.srv.Sign(callFrom("10.3.0.1:1", nil), &certpb.SignRequest{Csr: csrFor(t, "")})
	lines := f.log.take("certificate request refused")
	if len(lines) != 1 || lines[0].attrs["suppressed"] != "19" {
		t.Errorf("an interval later: %+v, want one line with suppressed=19", lines)
	}
}
