// Package certs is Horizon's certificate authority: one SPIFFE trust root for
// the ClusterSet, an intermediate CA per member cluster under it, X509-SVIDs
// issued by either (svid.go), their verification (verify.go), PEM files and
// Kubernetes Secrets (store.go) and metrics (metrics.go).
//
// SPIFFE IDs, trust bundles and chain verification come from go-spiffe; this
// package adds what go-spiffe leaves to the issuer: making the certificates,
// and the X509-SVID leaf rules go-spiffe's verification does not check.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Validity defaults and the clock skew every new certificate allows for.
const (
	DefaultRootTTL         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateTTL = 365 * 24 * time.Hour
	DefaultSVIDTTL         = 24 * time.Hour
	// ClockSkew is how far NotBefore is set in the past, so that a peer whose
	// clock is a little behind still accepts a certificate made just now.
	ClockSkew = 5 * time.Minute
)

// CA signs X509-SVIDs (and, if it is a root, intermediate CAs) for one trust
// domain. It is immutable and safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	chain   []*x509.Certificate // cert first, the root it chains to last
	roots   []*x509.Certificate // the trust bundle: chain's root, and any others (rotation)
	td      spiffeid.TrustDomain
	cluster string // the member cluster of an intermediate; "" for a root
	now     func() time.Time
	metrics *Metrics
}

// Option configures NewRoot, NewIntermediate and the Load functions.
type Option func(*options)

type options struct {
	now     func() time.Time
	ttl     time.Duration
	metrics *Metrics
	td      spiffeid.TrustDomain
	cluster string
}

// WithClock sets the CA's clock (default time.Now): validity periods of what
// it makes, and the time at which loaded certificates must be valid.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithTTL sets how long a new CA certificate is valid (default
// DefaultRootTTL or DefaultIntermediateTTL). It is capped at the parent's
// expiry.
func WithTTL(ttl time.Duration) Option { return func(o *options) { o.ttl = ttl } }

// WithMetrics records the CA's expiry and its issuance in m.
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// WithTrustDomain names the trust domain of a loaded CA whose certificates
// carry no SPIFFE ID (an operator's own PKI). If they carry one, it must be
// td.
func WithTrustDomain(td spiffeid.TrustDomain) Option { return func(o *options) { o.td = td } }

// WithCluster names the member cluster of a loaded intermediate (default: its
// subject's single OU, which is how NewIntermediate names it).
func WithCluster(name string) Option { return func(o *options) { o.cluster = name } }

func newOptions(base options, opts []Option) options {
	if base.now == nil {
		base.now = time.Now
	}
	for _, opt := range opts {
		opt(&base)
	}
	return base
}

// NewRoot makes a self-signed root CA for td: an ECDSA P-256 key, the trust
// domain's SPIFFE ID as its only URI SAN, valid for DefaultRootTTL unless
// WithTTL says otherwise.
func NewRoot(td spiffeid.TrustDomain, opts ...Option) (*CA, error) {
	if td.IsZero() {
		return nil, errors.New("new root: no trust domain")
	}
	o := newOptions(options{ttl: DefaultRootTTL}, opts)
	if o.ttl <= 0 {
		return nil, fmt.Errorf("new root: ttl %v is not positive", o.ttl)
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("new root: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new root: %w", err)
	}
	now := o.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Horizon"}, CommonName: "Horizon root CA for " + td.Name()},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(o.ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new root: %w", err)
	}
	ca := &CA{
		cert: cert, key: key,
		chain: []*x509.Certificate{cert}, roots: []*x509.Certificate{cert},
		td: td, now: o.now, metrics: o.metrics,
	}
	o.metrics.observeCA(ca)
	return ca, nil
}

// NewIntermediate makes an intermediate CA for the member cluster named
// cluster, signed by c: its subject names the cluster (OU and CN), it may
// sign only leaves (MaxPathLen 0), and it is valid for
// DefaultIntermediateTTL unless WithTTL says otherwise, never beyond c's
// chain. It inherits c's clock and metrics unless opts replace them.
func (c *CA) NewIntermediate(cluster string, opts ...Option) (*CA, error) {
	if msgs := validation.IsDNS1123Label(cluster); len(msgs) > 0 {
		return nil, fmt.Errorf("new intermediate: cluster %q: %s", cluster, strings.Join(msgs, "; "))
	}
	if c.cert.MaxPathLenZero || c.cert.MaxPathLen == 0 {
		return nil, fmt.Errorf("new intermediate for %s: CA %q may not sign CAs (path length 0)", cluster, c.cert.Subject)
	}
	o := newOptions(options{ttl: DefaultIntermediateTTL, now: c.now, metrics: c.metrics}, opts)
	if o.ttl <= 0 {
		return nil, fmt.Errorf("new intermediate for %s: ttl %v is not positive", cluster, o.ttl)
	}
	now := o.now()
	notAfter := now.Add(o.ttl)
	if end := c.notAfter(); end.Before(notAfter) {
		notAfter = end
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("new intermediate for %s: CA %q expired at %s", cluster, c.cert.Subject, c.notAfter().UTC().Format(time.RFC3339))
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("new intermediate for %s: %w", cluster, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new intermediate for %s: %w", cluster, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization:       []string{"Horizon"},
			OrganizationalUnit: []string{cluster},
			CommonName:         "Horizon intermediate CA for cluster " + cluster,
		},
		URIs:                  []*url.URL{c.td.ID().URL()},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	cert, err := sign(tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, fmt.Errorf("new intermediate for %s: %w", cluster, err)
	}
	ca := &CA{
		cert: cert, key: key,
		chain: append([]*x509.Certificate{cert}, c.chain...), roots: c.roots,
		td: c.td, cluster: cluster, now: o.now, metrics: o.metrics,
	}
	o.metrics.observeCA(ca)
	return ca, nil
}

// Certificate is the CA's own (signing) certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Chain is the CA's certificate followed by its issuers, up to and including
// the root.
func (c *CA) Chain() []*x509.Certificate { return append([]*x509.Certificate(nil), c.chain...) }

// Root is the root the CA chains to.
func (c *CA) Root() *x509.Certificate { return c.chain[len(c.chain)-1] }

// IsRoot says whether the CA is itself a root.
func (c *CA) IsRoot() bool { return len(c.chain) == 1 }

// TrustDomain is the trust domain the CA issues for.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// Cluster is the member cluster of an intermediate CA, "" for a root.
func (c *CA) Cluster() string { return c.cluster }

// BoundCluster is the member cluster c's own chain names, as ClusterOf reads
// a verified chain: the nearest CA of the chain whose subject is
// organization ClusterOrganization with the cluster as the single OU
// (NewIntermediate's). Every leaf c signs is bound to it. It is "" when no CA
// of the chain names a cluster (a root, an operator's CA): such a CA binds a
// leaf to a cluster only through ForCluster. Unlike Cluster, which is the
// name c was made or loaded under, it is what a peer reading c's
// certificates sees.
func (c *CA) BoundCluster() string {
	for _, cert := range c.chain {
		if name := clusterName(cert); name != "" {
			return name
		}
	}
	return ""
}

// Bundle is the trust domain's X.509 bundle: every root the CA was made or
// loaded with (more than one while a root is being rotated). Peers verify
// SVIDs of every cluster's intermediate with it.
func (c *CA) Bundle() *x509bundle.Bundle { return x509bundle.FromX509Authorities(c.td, c.roots) }

// notAfter is when the first certificate of the chain expires.
func (c *CA) notAfter() time.Time {
	end := c.cert.NotAfter
	for _, cert := range c.chain[1:] {
		if cert.NotAfter.Before(end) {
			end = cert.NotAfter
		}
	}
	return end
}

// notBefore is when the last certificate of the chain to become valid does.
func (c *CA) notBefore() time.Time {
	start := c.cert.NotBefore
	for _, cert := range c.chain[1:] {
		if cert.NotBefore.After(start) {
			start = cert.NotBefore
		}
	}
	return start
}

// GenerateKey makes an ECDSA P-256 key, the kind Horizon gives CAs and
// workloads.
func GenerateKey() (crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return key, nil
}

// Fingerprint is the SHA-256 fingerprint of cert's DER, in the form openssl
// prints (AB:CD:...).
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	hexSum := strings.ToUpper(hex.EncodeToString(sum[:]))
	pairs := make([]string, 0, len(sum))
	for i := 0; i < len(hexSum); i += 2 {
		pairs = append(pairs, hexSum[i:i+2])
	}
	return strings.Join(pairs, ":")
}

// newSerial is a random, positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	if serial.Sign() == 0 {
		serial.SetInt64(1)
	}
	return serial, nil
}

// sign makes the certificate tmpl describes, signed by parent's key, and
// parses it back so every field is what a peer will see.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	return cert, nil
}
