package certs

import (
	"crypto"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// leafTemplate is a valid X509-SVID leaf for id, valid from t0-5m to t0+1h;
// each case of TestVerifySPIFFERules breaks one rule of it.
func leafTemplate(t *testing.T, id string) *x509.Certificate {
	t.Helper()
	serial, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		URIs:                  []*url.URL{mustURL(t, id)},
		NotBefore:             t0.Add(-ClockSkew),
		NotAfter:              t0.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
}

// signLeaf signs tmpl with ca's key, bypassing Issue's rules, and returns the
// chain a workload would present: the leaf and ca's chain without the root.
func signLeaf(t *testing.T, ca *CA, tmpl *x509.Certificate) []*x509.Certificate {
	t.Helper()
	chain, _ := signLeafKey(t, ca, tmpl)
	return chain
}

// signLeafKey is signLeaf that also returns the leaf's key.
func signLeafKey(t *testing.T, ca *CA, tmpl *x509.Certificate) ([]*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := sign(tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return append([]*x509.Certificate{leaf}, ca.chain[:len(ca.chain)-1]...), key
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestVerifySPIFFERules builds certificates that each break one X509-SVID
// rule and checks that Verify refuses them for that reason. goSpiffe records
// whether go-spiffe's x509svid.Verify alone refuses the case: where it does
// not, Horizon's own leaf checks are what refuse it.
func TestVerifySPIFFERules(t *testing.T) {
	p := newPKI(t)
	foreign := newPKI(t) // same trust domain name, unrelated root
	const workload = "spiffe://example.org/ns/demo/sa/echo"
	rootBundle := p.root.Bundle()
	otherTD := spiffeid.RequireTrustDomainFromString("other.org")
	otherRoot, err := NewRoot(otherTD, WithClock(fixedClock(t0)))
	if err != nil {
		t.Fatal(err)
	}
	// A leaf (not a CA) signing another leaf.
	signer, signerKey := issueKey(t, p.east, spiffeid.RequireFromString(workload))
	leafSigner := &CA{cert: signer.Leaf(), key: signerKey, chain: append(signer.Certificates, p.root.cert), td: td}

	tests := []struct {
		name     string
		ca       *CA                                           // signer (default east)
		edit     func(*x509.Certificate)                       // breaks a rule of the leaf template
		chain    func([]*x509.Certificate) []*x509.Certificate // changes the presented chain
		bundle   x509bundle.Source                             // default: the root's bundle
		at       time.Time                                     // default t0
		want     Reason                                        // "" for accepted
		goSpiffe bool                                          // go-spiffe's x509svid.Verify refuses it too
	}{
		{name: "leaf from root", ca: p.root},
		{name: "leaf from east intermediate"},
		{name: "leaf from west intermediate", ca: p.west},
		{name: "accepted at the skewed NotBefore", at: t0.Add(-ClockSkew)},
		{name: "no extended key usage is allowed", edit: func(c *x509.Certificate) { c.ExtKeyUsage = nil }},

		{name: "bad trust domain: ID in another trust domain than the bundle's",
			edit: func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL(t, "spiffe://other.org/ns/demo/sa/echo")} },
			want: ReasonTrustDomain, goSpiffe: true},
		{name: "bad trust domain: bundle of another trust domain",
			bundle: otherRoot.Bundle(), want: ReasonTrustDomain, goSpiffe: true},
		{name: "no URI SAN",
			edit: func(c *x509.Certificate) { c.URIs = nil }, want: ReasonURISAN, goSpiffe: true},
		{name: "two URI SANs",
			edit: func(c *x509.Certificate) {
				c.URIs = append(c.URIs, mustURL(t, "spiffe://example.org/ns/demo/sa/admin"))
			}, want: ReasonURISAN, goSpiffe: true},
		{name: "URI SAN not a SPIFFE ID",
			edit: func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL(t, "https://example.org/ns/demo/sa/echo")} },
			want: ReasonID, goSpiffe: true},
		{name: "the trust domain's own ID on a leaf",
			edit: func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL(t, "spiffe://example.org")} },
			want: ReasonID},
		{name: "CA leaf",
			edit: func(c *x509.Certificate) { c.IsCA = true }, want: ReasonCALeaf, goSpiffe: true},
		{name: "wrong key usage: keyCertSign on a leaf",
			edit: func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }, want: ReasonKeyUsage, goSpiffe: true},
		{name: "wrong key usage: cRLSign on a leaf",
			edit: func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCRLSign }, want: ReasonKeyUsage, goSpiffe: true},
		{name: "wrong key usage: no digitalSignature",
			edit: func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }, want: ReasonKeyUsage},
		{name: "wrong key usage: no key usage extension",
			edit: func(c *x509.Certificate) { c.KeyUsage = 0 }, want: ReasonKeyUsage},
		{name: "wrong key usage: extended key usage without clientAuth",
			edit: func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }, want: ReasonKeyUsage},
		{name: "expired",
			at: t0.Add(2 * time.Hour), want: ReasonExpired, goSpiffe: true},
		{name: "expired: NotAfter in the past",
			edit: func(c *x509.Certificate) { c.NotBefore, c.NotAfter = t0.Add(-48*time.Hour), t0.Add(-24*time.Hour) },
			want: ReasonExpired, goSpiffe: true},
		{name: "not yet valid",
			at: t0.Add(-time.Hour), want: ReasonExpired, goSpiffe: true},
		{name: "expired intermediate",
			at: t0.Add(DefaultIntermediateTTL + time.Minute), edit: func(c *x509.Certificate) { c.NotAfter = t0.Add(2 * DefaultIntermediateTTL) },
			want: ReasonExpired, goSpiffe: true},
		{name: "foreign root",
			ca: foreign.root, want: ReasonUntrusted, goSpiffe: true},
		{name: "foreign root's intermediate",
			ca: foreign.east, want: ReasonUntrusted, goSpiffe: true},
		{name: "intermediate missing from the chain",
			chain: func(c []*x509.Certificate) []*x509.Certificate { return c[:1] }, want: ReasonUntrusted, goSpiffe: true},
		{name: "another cluster's intermediate in the chain",
			chain: func(c []*x509.Certificate) []*x509.Certificate { return []*x509.Certificate{c[0], p.west.cert} },
			want:  ReasonUntrusted, goSpiffe: true},
		{name: "signed by a leaf",
			ca: leafSigner, want: ReasonUntrusted, goSpiffe: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, bundle, at := p.east, x509bundle.Source(rootBundle), t0
			if tt.ca != nil {
				ca = tt.ca
			}
			if tt.bundle != nil {
				bundle = tt.bundle
			}
			if !tt.at.IsZero() {
				at = tt.at
			}
			tmpl := leafTemplate(t, workload)
			if tt.edit != nil {
				tt.edit(tmpl)
			}
			chain := signLeaf(t, ca, tmpl)
			if tt.chain != nil {
				chain = tt.chain(chain)
			}

			id, err := Verify(chain, bundle, at)
			if got := ReasonOf(err); got != tt.want {
				t.Fatalf("Verify: reason %q, want %q (err %v)", got, tt.want, err)
			}
			if tt.want == "" && id.String() != workload {
				t.Errorf("Verify: id %v", id)
			}
			if tt.want != "" && err.Error() == "" {
				t.Error("empty error")
			}

			_, _, spiffeErr := x509svid.Verify(chain, bundle, x509svid.WithTime(at))
			if refused := spiffeErr != nil; refused != tt.goSpiffe {
				t.Errorf("go-spiffe x509svid.Verify refused = %v (%v), want %v", refused, spiffeErr, tt.goSpiffe)
			}
		})
	}
}

func TestVerifyAcrossClusters(t *testing.T) {
	p := newPKI(t)
	bundle := p.root.Bundle()
	for _, c := range []struct {
		ca *CA
		id string
	}{
		{p.east, "spiffe://example.org/ns/demo/sa/echo"},
		{p.west, "spiffe://example.org/ns/shop/sa/cart"},
		{p.root, "spiffe://example.org/ns/horizon-system/sa/horizon"},
	} {
		id := spiffeid.RequireFromString(c.id)
		svid := issue(t, c.ca, id)
		got, err := Verify(svid.Certificates, bundle, t0)
		if err != nil || got != id {
			t.Errorf("%s SVID from %q: %v, %v", c.id, c.ca.Certificate().Subject, got, err)
		}
	}
}

func TestVerifyEmptyChain(t *testing.T) {
	if _, err := Verify(nil, newPKI(t).root.Bundle(), t0); ReasonOf(err) != ReasonUntrusted {
		t.Errorf("empty chain: %v", err)
	}
	if _, err := Verify(issue(t, newPKI(t).east, echoID).Certificates, nil, t0); ReasonOf(err) != ReasonUntrusted {
		t.Errorf("no bundle: %v", err)
	}
}

// operatorCA is the operator's own CA of testdata/operator-pki (organization
// Example Corp, OU mesh: no Horizon cluster), and a time it is valid at.
func operatorCA(t *testing.T) (*CA, time.Time) {
	t.Helper()
	dir := filepath.Join("testdata", "operator-pki")
	pem, err := os.ReadFile(filepath.Join(dir, RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := ParseCertificates(pem)
	if err != nil {
		t.Fatal(err)
	}
	now := roots[0].NotBefore.Add(time.Hour)
	ca, err := LoadDir(dir, WithClock(fixedClock(now)), WithTrustDomain(td))
	if err != nil {
		t.Fatal(err)
	}
	return ca, now
}

// TestClusterOf reads the member cluster from verified chains: a cluster's
// intermediate decides, a leaf's own subject only where no CA of the chain
// names a cluster, and only in Horizon's organization.
func TestClusterOf(t *testing.T) {
	p := newPKI(t)
	operator, operatorNow := operatorCA(t)
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	issued := func(ca *CA, opts ...IssueOption) []*x509.Certificate {
		svid, err := ca.Issue(key.Public(), echoID, 0, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return svid.Certificates
	}
	withSubject := func(ca *CA, org, ou string) []*x509.Certificate {
		tmpl := leafTemplate(t, echoID.String())
		tmpl.Subject.Organization, tmpl.Subject.OrganizationalUnit = []string{org}, []string{ou}
		return signLeaf(t, ca, tmpl)
	}
	eastLeaf := issued(p.east)

	for _, c := range []struct {
		name   string
		chain  []*x509.Certificate // as presented
		bundle *CA
		now    time.Time
		want   string
	}{
		{"east's intermediate", eastLeaf, p.root, t0, "east"},
		{"east's intermediate, bound to east", issued(p.east, ForCluster("east")), p.root, t0, "east"},
		{"top CA, leaf bound to north", issued(p.root, ForCluster("north")), p.root, t0, "north"},
		{"top CA, unbound leaf", issued(p.root), p.root, t0, ""},
		{"operator's CA (O=Example Corp, OU=mesh), unbound leaf", issued(operator), operator, operatorNow, ""},
		{"operator's CA, leaf bound to east", issued(operator, ForCluster("east")), operator, operatorNow, "east"},
		{"leaf claiming west under east's intermediate", withSubject(p.east, ClusterOrganization, "west"), p.root, t0, "east"},
		{"west's intermediate spliced in before east's", []*x509.Certificate{eastLeaf[0], p.west.Certificate(), p.east.Certificate()}, p.root, t0, "east"},
		{"leaf OU in another organization", withSubject(p.root, "Example Corp", "west"), p.root, t0, ""},
		{"leaf OU that is no DNS label", withSubject(p.root, ClusterOrganization, "West_1"), p.root, t0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, verified, err := VerifyChain(c.chain, c.bundle.Bundle(), c.now)
			if err != nil {
				t.Fatal(err)
			}
			if got := ClusterOf(verified); got != c.want {
				t.Errorf("ClusterOf = %q, want %q", got, c.want)
			}
		})
	}

	for _, c := range []struct {
		name  string
		chain []*x509.Certificate
	}{
		{"no chain", nil},
		{"a Horizon root alone", []*x509.Certificate{p.root.Certificate()}},
		{"the operator's root alone", []*x509.Certificate{operator.Root()}},
	} {
		if got := ClusterOf(c.chain); got != "" {
			t.Errorf("%s: ClusterOf = %q, want none", c.name, got)
		}
	}
}
