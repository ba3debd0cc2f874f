package certsvc

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/horizonmesh/horizon/certs"
)

// ServerTLS is the TLS configuration of Horizon's mutual-TLS port when
// Horizon is the CA: it serves svid's certificate and asks for a client
// certificate without requiring one (a workload that has none yet comes
// with a token), but a certificate that is offered must be an X509-SVID of
// td under the current bundle at now(), or the handshake fails. Whether a
// stream without a certificate may do anything is decided per service: xDS
// refuses it, the certificate API wants a token from it.
func ServerTLS(svid x509svid.Source, bundles x509bundle.Source, td spiffeid.TrustDomain, now func() time.Time) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.RequestClientCert,
		GetCertificate: tlsconfig.GetCertificate(svid),
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil
			}
			chain := make([]*x509.Certificate, 0, len(raw))
			for _, der := range raw {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return fmt.Errorf("client certificate: %w", err)
				}
				chain = append(chain, c)
			}
			id, err := certs.Verify(chain, bundles, now())
			if err != nil {
				return err
			}
			if id.TrustDomain() != td {
				return fmt.Errorf("client certificate %s is not in trust domain %s", id, td)
			}
			return nil
		},
	}
}

// Self is Horizon's own X509-SVID when Horizon is the CA: issued by the
// current CA on first use and again when half its lifetime has passed or
// the CA changed (root rotation). It is an x509svid.Source and an
// x509bundle.Source.
type Self struct {
	id   spiffeid.ID
	ttl  time.Duration
	ca   func() (*certs.CA, error)
	now  func() time.Time
	opts []certs.IssueOption

	mu     sync.Mutex
	svid   *x509svid.SVID
	issuer *certs.CA
}

// NewSelf makes Horizon's own SVID source for id, signed by what ca returns
// at the time, with opts (certs.WithServingNames for a webhook's serving
// certificate).
func NewSelf(id spiffeid.ID, ttl time.Duration, ca func() (*certs.CA, error), now func() time.Time, opts ...certs.IssueOption) *Self {
	if now == nil {
		now = time.Now
	}
	return &Self{id: id, ttl: ttl, ca: ca, now: now, opts: opts}
}

// GetX509SVID implements x509svid.Source.
func (s *Self) GetX509SVID() (*x509svid.SVID, error) {
	ca, err := s.ca()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.svid != nil && s.issuer == ca {
		leaf := s.svid.Certificates[0]
		if now.Before(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)) {
			return s.svid, nil
		}
	}
	key, err := certs.GenerateKey()
	if err != nil {
		return nil, err
	}
	issued, err := ca.Issue(key.Public(), s.id, s.ttl, s.opts...)
	if err != nil {
		return nil, err
	}
	svid, err := issued.WithKey(key)
	if err != nil {
		return nil, err
	}
	s.svid, s.issuer = svid, ca
	return svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source with the current
// CA's bundle.
func (s *Self) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	ca, err := s.ca()
	if err != nil {
		return nil, err
	}
	if td != ca.TrustDomain() {
		return nil, fmt.Errorf("no bundle for trust domain %s", td)
	}
	return ca.Bundle(), nil
}
