package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"k8s.io/apimachinery/pkg/util/validation"
)

// SVID is an issued X509-SVID, without its private key.
type SVID struct {
	ID spiffeid.ID
	// Certificates is what a workload presents: the leaf first, then the
	// issuing CA's chain without the root (peers have the root in their
	// bundle).
	Certificates []*x509.Certificate
}

// Leaf is the SVID's own certificate.
func (s *SVID) Leaf() *x509.Certificate { return s.Certificates[0] }

// WithKey pairs the SVID with its private key as go-spiffe's x509svid.SVID,
// an x509svid.Source for spiffetls/tlsconfig. go-spiffe checks the pair: the
// key must match the leaf, and the chain must follow the X509-SVID rules.
func (s *SVID) WithKey(key crypto.Signer) (*x509svid.SVID, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("svid %s: marshal key: %w", s.ID, err)
	}
	var chainDER []byte
	for _, cert := range s.Certificates {
		chainDER = append(chainDER, cert.Raw...)
	}
	svid, err := x509svid.ParseRaw(chainDER, keyDER)
	if err != nil {
		return nil, fmt.Errorf("svid %s: %w", s.ID, err)
	}
	return svid, nil
}

// IssueOption changes one issuance (Issue, SignCSR).
type IssueOption func(*issueOptions)

type issueOptions struct {
	cluster string
	dns     []string
	ips     []net.IP
}

// WithServingNames adds DNS and IP SANs to the SVID, for a server that
// clients outside the mesh reach by name (Horizon's admission webhook,
// which the Kubernetes API server calls). The SPIFFE ID stays the one URI
// SAN.
func WithServingNames(dns []string, ips []net.IP) IssueOption {
	return func(o *issueOptions) { o.dns, o.ips = dns, ips }
}

// ForCluster binds the SVID to the member cluster named cluster, so that
// ClusterOf reads that cluster from its verified chain. A CA whose chain
// names a cluster (a cluster's intermediate, BoundCluster) binds every leaf
// it signs already, and must name this one. A CA that names none (the top
// CA, signing for a cluster without an intermediate of its own) writes the
// cluster into the leaf's subject: organization ClusterOrganization and the
// cluster as the single OU. cluster must be a DNS label; "" binds nothing,
// and the leaf keeps the plain subject.
func ForCluster(cluster string) IssueOption {
	return func(o *issueOptions) { o.cluster = cluster }
}

// SignCSR issues an X509-SVID for id to the key that signed csr. The ID comes
// only from id: whatever names csr asks for are ignored, and so is its
// subject; only its public key and its signature (which must be valid) count.
// ttl 0 means DefaultSVIDTTL. A refusal is an *Error.
func (c *CA) SignCSR(csr *x509.CertificateRequest, id spiffeid.ID, ttl time.Duration, opts ...IssueOption) (*SVID, error) {
	if err := csr.CheckSignature(); err != nil {
		err = refuse(ReasonCSR, "certificate request for %s: bad signature: %w", id, err)
		c.metrics.refused(err)
		return nil, err
	}
	return c.Issue(csr.PublicKey, id, ttl, opts...)
}

// Issue issues an X509-SVID for id to pub, following the SPIFFE X509-SVID
// rules: id (which must be a workload ID in the CA's trust domain) is the one
// URI SAN; the leaf is not a CA; its key usage is digitalSignature
// (keyEncipherment too for an RSA key) and its extended key usage serverAuth
// and clientAuth; NotBefore is ClockSkew ago; NotAfter is ttl from now (0
// means DefaultSVIDTTL) but never beyond the CA chain's expiry. The subject
// is organization "SPIFFE", unless ForCluster binds the leaf to a cluster. A
// refusal is an *Error.
func (c *CA) Issue(pub crypto.PublicKey, id spiffeid.ID, ttl time.Duration, opts ...IssueOption) (*SVID, error) {
	var o issueOptions
	for _, opt := range opts {
		opt(&o)
	}
	svid, err := c.issue(pub, id, ttl, o)
	if err != nil {
		c.metrics.refused(err)
		return nil, err
	}
	c.metrics.issued(svid.Leaf(), c.now())
	return svid, nil
}

func (c *CA) issue(pub crypto.PublicKey, id spiffeid.ID, ttl time.Duration, o issueOptions) (*SVID, error) {
	switch {
	case id.IsZero():
		return nil, refuse(ReasonID, "issue: no SPIFFE ID")
	case id.Path() == "":
		return nil, refuse(ReasonID, "issue %s: the trust domain's own ID is not a workload ID", id)
	case id.TrustDomain() != c.td:
		return nil, refuse(ReasonTrustDomain, "issue %s: not in trust domain %s", id, c.td)
	case ttl < 0:
		return nil, refuse(ReasonTTL, "issue %s: negative ttl %v", id, ttl)
	case ttl == 0:
		ttl = DefaultSVIDTTL
	}
	subject, err := c.leafSubject(id, o.cluster)
	if err != nil {
		return nil, err
	}
	usage := x509.KeyUsageDigitalSignature
	switch k := pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, refuse(ReasonKey, "issue %s: RSA key of %d bits, want at least 2048", id, k.N.BitLen())
		}
		usage |= x509.KeyUsageKeyEncipherment
	default:
		return nil, refuse(ReasonKey, "issue %s: unsupported public key type %T", id, pub)
	}

	now := c.now()
	notAfter := now.Add(ttl)
	if end := c.notAfter(); end.Before(notAfter) {
		notAfter = end
	}
	if !notAfter.After(now) {
		return nil, refuse(ReasonCAExpired, "issue %s: CA %q expired at %s", id, c.cert.Subject, c.notAfter().UTC().Format(time.RFC3339))
	}
	// A clock that jumped back before the chain is valid would sign a leaf
	// that is valid later, or never (NotAfter before NotBefore).
	if start := c.notBefore(); now.Add(ClockSkew).Before(start) {
		return nil, refuse(ReasonCAExpired, "issue %s: CA %q is not valid before %s and this host's clock says %s: is the clock behind?", id, c.cert.Subject, start.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-ClockSkew)
	if notBefore.Before(c.cert.NotBefore) {
		notBefore = c.cert.NotBefore
	}
	serial, err := newSerial()
	if err != nil {
		return nil, refuse(ReasonInternal, "issue %s: %w", id, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              o.dns,
		IPAddresses:           o.ips,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	leaf, err := sign(tmpl, c.cert, pub, c.key)
	if err != nil {
		return nil, refuse(ReasonInternal, "issue %s: %w", id, err)
	}
	chain := append([]*x509.Certificate{leaf}, c.chain[:len(c.chain)-1]...)
	return &SVID{ID: id, Certificates: chain}, nil
}

// leafSubject is the subject of a leaf for id bound to cluster (ForCluster):
// it names the cluster only when c's chain does not.
func (c *CA) leafSubject(id spiffeid.ID, cluster string) (pkix.Name, error) {
	plain := pkix.Name{Organization: []string{"SPIFFE"}}
	if cluster == "" {
		return plain, nil
	}
	if msgs := validation.IsDNS1123Label(cluster); len(msgs) > 0 {
		return pkix.Name{}, refuse(ReasonCluster, "issue %s for cluster %q: %s", id, cluster, strings.Join(msgs, "; "))
	}
	switch bound := c.BoundCluster(); bound {
	case "":
		return pkix.Name{Organization: []string{ClusterOrganization}, OrganizationalUnit: []string{cluster}}, nil
	case cluster:
		return plain, nil
	default:
		return pkix.Name{}, refuse(ReasonCluster, "issue %s for cluster %s: CA %q is cluster %s's", id, cluster, c.cert.Subject, bound)
	}
}
