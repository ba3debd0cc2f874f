package certs

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func issueKey(t *testing.T, ca *CA, id spiffeid.ID) (*SVID, crypto.Signer) {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(key.Public(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	return svid, key
}

func issue(t *testing.T, ca *CA, id spiffeid.ID) *SVID {
	t.Helper()
	svid, _ := issueKey(t, ca, id)
	return svid
}

var echoID = spiffeid.RequireFromString("spiffe://example.org/ns/demo/sa/echo")

func TestIssueFollowsSPIFFERules(t *testing.T) {
	p := newPKI(t)
	ecKey, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		key   crypto.Signer
		usage x509.KeyUsage
	}{
		{"ecdsa", ecKey, x509.KeyUsageDigitalSignature},
		{"ed25519", edKey, x509.KeyUsageDigitalSignature},
		{"rsa", rsaKey, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
	} {
		t.Run(c.name, func(t *testing.T) {
			svid, err := p.east.Issue(c.key.Public(), echoID, 0)
			if err != nil {
				t.Fatal(err)
			}
			leaf := svid.Leaf()
			switch {
			case svid.ID != echoID:
				t.Errorf("ID %v", svid.ID)
			case len(leaf.URIs) != 1 || leaf.URIs[0].String() != echoID.String():
				t.Errorf("URI SANs %v", leaf.URIs)
			case len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0:
				t.Errorf("other SANs %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
			case !leaf.BasicConstraintsValid || leaf.IsCA:
				t.Errorf("basic constraints valid %v, CA %v", leaf.BasicConstraintsValid, leaf.IsCA)
			case leaf.KeyUsage != c.usage:
				t.Errorf("key usage %v, want %v", leaf.KeyUsage, c.usage)
			case !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}):
				t.Errorf("extended key usage %v", leaf.ExtKeyUsage)
			case !leaf.NotBefore.Equal(t0.Add(-5 * time.Minute)):
				t.Errorf("NotBefore %v, want 5m before %v", leaf.NotBefore, t0)
			case !leaf.NotAfter.Equal(t0.Add(24 * time.Hour)):
				t.Errorf("NotAfter %v, want the default 24h after %v", leaf.NotAfter, t0)
			case leaf.SerialNumber.BitLen() < 100:
				t.Errorf("serial %v", leaf.SerialNumber)
			case len(svid.Certificates) != 2 || svid.Certificates[1] != p.east.Certificate():
				t.Errorf("chain %v, want [leaf, east] without the root", svid.Certificates)
			case leaf.CheckSignatureFrom(p.east.Certificate()) != nil:
				t.Error("not signed by east")
			}
			if _, err := Verify(svid.Certificates, p.root.Bundle(), t0); err != nil {
				t.Error(err)
			}
			// go-spiffe accepts it as an SVID with its key.
			x, err := svid.WithKey(c.key)
			if err != nil {
				t.Fatal(err)
			}
			if x.ID != echoID || len(x.Certificates) != 2 {
				t.Errorf("go-spiffe SVID %v %d certificates", x.ID, len(x.Certificates))
			}
		})
	}
}

func TestIssueFromRootHasNoIntermediates(t *testing.T) {
	svid := issue(t, newPKI(t).root, echoID)
	if len(svid.Certificates) != 1 {
		t.Errorf("%d certificates, want only the leaf", len(svid.Certificates))
	}
}

func TestIssueTTL(t *testing.T) {
	p := newPKI(t)
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svid, err := p.east.Issue(key.Public(), echoID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := svid.Leaf().NotAfter; !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("ttl 1h: NotAfter %v", got)
	}

	// Never beyond the CA: here the intermediate expires in 2h...
	short, err := p.root.NewIntermediate("short", WithTTL(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	svid, err = short.Issue(key.Public(), echoID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := svid.Leaf().NotAfter, short.Certificate().NotAfter; !got.Equal(want) {
		t.Errorf("NotAfter %v, want the intermediate's %v", got, want)
	}
	// ...and here the root expires in 3h while an intermediate under it (an
	// operator's, say) claims a year: the root's expiry caps the SVID.
	shortRoot, err := NewRoot(td, WithClock(fixedClock(t0)), WithTTL(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	longKey, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *p.east.Certificate()
	tmpl.NotAfter = t0.Add(DefaultIntermediateTTL)
	long, err := sign(&tmpl, shortRoot.cert, longKey.Public(), shortRoot.key)
	if err != nil {
		t.Fatal(err)
	}
	east := &CA{cert: long, key: longKey, chain: []*x509.Certificate{long, shortRoot.cert}, roots: shortRoot.roots, td: td, now: fixedClock(t0)}
	svid, err = east.Issue(key.Public(), echoID, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := svid.Leaf().NotAfter, t0.Add(3*time.Hour); !got.Equal(want) {
		t.Errorf("NotAfter %v, want the root's %v", got, want)
	}
}

// A CSR's names are ignored: the ID is the one given.
func TestSignCSRIgnoresCSRNames(t *testing.T) {
	p := newPKI(t)
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		URIs:           []*url.URL{mustURL(t, "spiffe://example.org/ns/kube-system/sa/admin"), mustURL(t, "spiffe://evil.org/x")},
		DNSNames:       []string{"evil.example"},
		IPAddresses:    []net.IP{net.IPv4(10, 0, 0, 1)},
		EmailAddresses: []string{"root@example.org"},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := p.east.SignCSR(csr, echoID, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf := svid.Leaf()
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != echoID.String() {
		t.Errorf("URI SANs %v, want only %v", leaf.URIs, echoID)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0 || leaf.Subject.CommonName != "" || slices.Contains(leaf.Subject.Organization, "system:masters") {
		t.Errorf("CSR names leaked into the SVID: %v %v %v %q", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, leaf.Subject)
	}
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		t.Error("SVID is not for the CSR's key")
	}
	if _, err := svid.WithKey(key); err != nil {
		t.Error(err)
	}
}

func TestIssueRefusals(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	p := newPKI(t, WithMetrics(m))
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	short, err := p.root.NewIntermediate("short", WithTTL(time.Hour), WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	goodCSR := func() *x509.CertificateRequest {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		return csr
	}
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	badCSR := goodCSR()
	badCSR.PublicKey = other.Public() // the signature no longer matches the key

	for _, c := range []struct {
		name string
		do   func() error
		want Reason
	}{
		{"ID outside the trust domain", func() error {
			_, err := p.east.Issue(key.Public(), spiffeid.RequireFromString("spiffe://other.org/ns/demo/sa/echo"), 0)
			return err
		}, ReasonTrustDomain},
		{"the trust domain's own ID", func() error { _, err := p.east.Issue(key.Public(), td.ID(), 0); return err }, ReasonID},
		{"no ID", func() error { _, err := p.east.Issue(key.Public(), spiffeid.ID{}, 0); return err }, ReasonID},
		{"bad CSR signature", func() error { _, err := p.east.SignCSR(badCSR, echoID, 0); return err }, ReasonCSR},
		{"negative ttl", func() error { _, err := p.east.Issue(key.Public(), echoID, -time.Second); return err }, ReasonTTL},
		{"weak RSA key", func() error { _, err := p.east.Issue(weak.Public(), echoID, 0); return err }, ReasonKey},
		{"X25519 key", func() error { _, err := p.east.Issue(x.PublicKey(), echoID, 0); return err }, ReasonKey},
		{"bound to another cluster than the CA's", func() error {
			_, err := p.east.Issue(key.Public(), echoID, 0, ForCluster("west"))
			return err
		}, ReasonCluster},
		{"CSR bound to another cluster than the CA's", func() error {
			_, err := p.east.SignCSR(goodCSR(), echoID, 0, ForCluster("west"))
			return err
		}, ReasonCluster},
		{"bound to a cluster that is no DNS label", func() error {
			_, err := p.root.Issue(key.Public(), echoID, 0, ForCluster("West_1"))
			return err
		}, ReasonCluster},
		{"expired CA", func() error {
			mu.Lock()
			now = t0.Add(2 * time.Hour)
			mu.Unlock()
			_, err := short.Issue(key.Public(), echoID, 0)
			return err
		}, ReasonCAExpired},
		// F8: the CA's clock jumped back, before its certificate is valid:
		// the leaf would be valid only later (or never: NotAfter before
		// NotBefore).
		{"CA clock behind its certificate", func() error {
			mu.Lock()
			now = t0.Add(-3 * time.Hour)
			mu.Unlock()
			svid, err := short.Issue(key.Public(), echoID, 0)
			if err == nil {
				l := svid.Leaf()
				t.Logf("issued NotBefore %v NotAfter %v", l.NotBefore, l.NotAfter)
			}
			return err
		}, ReasonCAExpired},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := testutil.ToFloat64(m.refusals.WithLabelValues(string(c.want)))
			err := c.do()
			if got := ReasonOf(err); got != c.want {
				t.Fatalf("reason %q, want %q (err %v)", got, c.want, err)
			}
			if after := testutil.ToFloat64(m.refusals.WithLabelValues(string(c.want))); after != before+1 {
				t.Errorf("refusals{reason=%q} went from %v to %v", c.want, before, after)
			}
		})
	}
	if _, err := p.east.SignCSR(goodCSR(), echoID, 0); err != nil {
		t.Errorf("good CSR: %v", err)
	}
	if got := testutil.ToFloat64(m.issuedN); got != 1 {
		t.Errorf("issued %v, want 1 (refusals are not issuances)", got)
	}
}

// ForCluster writes the cluster into the leaf only when the CA names none;
// without it, or under a cluster's intermediate, the leaf's subject is the
// plain one.
func TestIssueForClusterSubject(t *testing.T) {
	p := newPKI(t)
	plain := pkix.Name{Organization: []string{"SPIFFE"}}
	bound := pkix.Name{Organization: []string{ClusterOrganization}, OrganizationalUnit: []string{"north"}}
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ca   *CA
		opts []IssueOption
		want pkix.Name
	}{
		{"root, no cluster", p.root, nil, plain},
		{"root, empty cluster", p.root, []IssueOption{ForCluster("")}, plain},
		{"root, for north", p.root, []IssueOption{ForCluster("north")}, bound},
		{"east's intermediate, for east", p.east, []IssueOption{ForCluster("east")}, plain},
		{"east's intermediate, no cluster", p.east, nil, plain},
	} {
		t.Run(c.name, func(t *testing.T) {
			svid, err := c.ca.Issue(key.Public(), echoID, 0, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := svid.Leaf().Subject; got.String() != c.want.String() {
				t.Errorf("subject %q, want %q", got, c.want)
			}
		})
	}
}

func TestIssueWithServingNames(t *testing.T) {
	p := newPKI(t)
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svid, err := p.root.Issue(key.Public(), echoID, time.Hour, WithServingNames([]string{"horizon-injector.horizon-system.svc"}, []net.IP{net.ParseIP("127.0.0.1")}))
	if err != nil {
		t.Fatal(err)
	}
	leaf := svid.Leaf()
	if err := leaf.VerifyHostname("horizon-injector.horizon-system.svc"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("other.svc"); err == nil {
		t.Error("other.svc verified")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != echoID.String() {
		t.Errorf("URIs %v, want the SPIFFE ID alone", leaf.URIs)
	}
}
