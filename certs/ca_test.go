package certs

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// t0 is the tests' fixed "now".
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// pki is a trust root with the intermediates of two member clusters.
type pki struct {
	root, east, west *CA
}

func newPKI(t *testing.T, opts ...Option) pki {
	t.Helper()
	root, err := NewRoot(td, append([]Option{WithClock(fixedClock(t0))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	east, err := root.NewIntermediate("east")
	if err != nil {
		t.Fatal(err)
	}
	west, err := root.NewIntermediate("west")
	if err != nil {
		t.Fatal(err)
	}
	return pki{root, east, west}
}

func TestNewRoot(t *testing.T) {
	p := newPKI(t)
	r := p.root.Certificate()
	switch {
	case !r.IsCA || !r.BasicConstraintsValid:
		t.Error("root is not a CA")
	case r.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign:
		t.Errorf("root key usage %v", r.KeyUsage)
	case len(r.URIs) != 1 || r.URIs[0].String() != "spiffe://example.org":
		t.Errorf("root URI SANs %v, want the trust domain's ID", r.URIs)
	case !r.NotBefore.Equal(t0.Add(-ClockSkew)) || !r.NotAfter.Equal(t0.Add(DefaultRootTTL)):
		t.Errorf("root valid %v to %v", r.NotBefore, r.NotAfter)
	case r.SerialNumber.BitLen() < 100:
		t.Errorf("serial %v is not random 128-bit", r.SerialNumber)
	case r.CheckSignatureFrom(r) != nil:
		t.Error("root is not self-signed")
	case !p.root.IsRoot() || p.root.Cluster() != "" || p.root.TrustDomain() != td:
		t.Errorf("root IsRoot %v cluster %q td %v", p.root.IsRoot(), p.root.Cluster(), p.root.TrustDomain())
	}
	if _, err := NewRoot(spiffeid.TrustDomain{}); err == nil {
		t.Error("NewRoot accepted no trust domain")
	}
	if _, err := NewRoot(td, WithTTL(-time.Hour)); err == nil {
		t.Error("NewRoot accepted a negative ttl")
	}
}

func TestNewIntermediate(t *testing.T) {
	p := newPKI(t)
	e := p.east.Certificate()
	switch {
	case !e.IsCA || !e.MaxPathLenZero || e.MaxPathLen != 0:
		t.Errorf("intermediate IsCA %v MaxPathLen %d zero %v", e.IsCA, e.MaxPathLen, e.MaxPathLenZero)
	case e.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign:
		t.Errorf("intermediate key usage %v", e.KeyUsage)
	case len(e.Subject.OrganizationalUnit) != 1 || e.Subject.OrganizationalUnit[0] != "east" || !strings.Contains(e.Subject.CommonName, "east"):
		t.Errorf("intermediate subject %q does not name the cluster", e.Subject)
	case !e.NotAfter.Equal(t0.Add(DefaultIntermediateTTL)):
		t.Errorf("intermediate expires %v", e.NotAfter)
	case e.CheckSignatureFrom(p.root.Certificate()) != nil:
		t.Error("intermediate not signed by the root")
	case p.east.IsRoot() || p.east.Cluster() != "east" || p.east.Root() != p.root.Certificate():
		t.Errorf("east IsRoot %v cluster %q", p.east.IsRoot(), p.east.Cluster())
	case p.east.BoundCluster() != "east" || p.root.BoundCluster() != "":
		t.Errorf("bound clusters: east's intermediate %q, root %q", p.east.BoundCluster(), p.root.BoundCluster())
	}
	if chain := p.east.Chain(); len(chain) != 2 || chain[0] != e || chain[1] != p.root.Certificate() {
		t.Errorf("chain %v, want [east, root]", chain)
	}
	// An intermediate outliving its root would be useless; it is capped.
	short, err := NewRoot(td, WithClock(fixedClock(t0)), WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	capped, err := short.NewIntermediate("east")
	if err != nil {
		t.Fatal(err)
	}
	if !capped.Certificate().NotAfter.Equal(short.Certificate().NotAfter) {
		t.Errorf("intermediate expires %v after its root %v", capped.Certificate().NotAfter, short.Certificate().NotAfter)
	}

	for _, bad := range []string{"", "East", "east_1", strings.Repeat("a", 64)} {
		if _, err := p.root.NewIntermediate(bad); err == nil {
			t.Errorf("NewIntermediate(%q) accepted", bad)
		}
	}
	if _, err := p.east.NewIntermediate("south"); err == nil || !strings.Contains(err.Error(), "may not sign CAs") {
		t.Errorf("an intermediate made an intermediate: %v", err)
	}
	later, err := short.NewIntermediate("late", WithClock(fixedClock(t0.Add(2*time.Hour))))
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired root made an intermediate %v: %v", later, err)
	}
}

func TestBundle(t *testing.T) {
	p := newPKI(t)
	for _, ca := range []*CA{p.root, p.east, p.west} {
		b := ca.Bundle()
		if b.TrustDomain() != td || len(b.X509Authorities()) != 1 || !b.HasX509Authority(p.root.Certificate()) {
			t.Errorf("%s bundle %v", ca.Cluster(), b.X509Authorities())
		}
	}
}

// A bundle with two roots (A being rotated to B) accepts SVIDs under either,
// and nothing else.
func TestBundleWithTwoRoots(t *testing.T) {
	a, b, c := newPKI(t), newPKI(t), newPKI(t)
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{a.root.Certificate(), b.root.Certificate()})
	id := spiffeid.RequireFromString("spiffe://example.org/ns/demo/sa/echo")
	for name, ca := range map[string]*CA{"A east": a.east, "B west": b.west, "B root": b.root} {
		if _, err := Verify(issue(t, ca, id).Certificates, bundle, t0); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Verify(issue(t, c.east, id).Certificates, bundle, t0); ReasonOf(err) != ReasonUntrusted {
		t.Errorf("third root: %v", err)
	}

	// Loaded with both roots in root.crt, a CA's bundle holds both.
	files, err := a.east.SecretData()
	if err != nil {
		t.Fatal(err)
	}
	files[RootCertFile] = EncodeCertificates(a.root.Certificate(), b.root.Certificate())
	loaded, err := LoadSecret(files, WithClock(fixedClock(t0)))
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.Bundle(); len(got.X509Authorities()) != 2 || !got.Equal(bundle) {
		t.Errorf("loaded bundle %v", got.X509Authorities())
	}
}

func TestFingerprint(t *testing.T) {
	p := newPKI(t)
	fp := Fingerprint(p.root.Certificate())
	if len(fp) != 32*3-1 || strings.Count(fp, ":") != 31 || strings.ToUpper(fp) != fp {
		t.Errorf("fingerprint %q", fp)
	}
	if fp == Fingerprint(p.east.Certificate()) {
		t.Error("two certificates, one fingerprint")
	}
}
