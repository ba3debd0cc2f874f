package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Reason says why an X509-SVID, or a request for one, was refused. It is the
// reason label of horizon_certs_svid_refusals_total.
type Reason string

// Why Verify refuses an X509-SVID.
const (
	ReasonTrustDomain Reason = "trust_domain" // its ID is in a trust domain there is no bundle for (Issue: not the CA's)
	ReasonURISAN      Reason = "uri_san"      // not exactly one URI SAN
	ReasonID          Reason = "id"           // the URI SAN is not a workload's SPIFFE ID
	ReasonCALeaf      Reason = "ca_leaf"      // the leaf is a CA
	ReasonKeyUsage    Reason = "key_usage"    // wrong key usage or extended key usage for a leaf
	ReasonExpired     Reason = "expired"      // a certificate of the chain is expired or not yet valid
	ReasonUntrusted   Reason = "untrusted"    // no valid chain to a root of the bundle
)

// Why Issue or SignCSR refuses (besides ReasonID and ReasonTrustDomain).
const (
	ReasonCSR       Reason = "csr"        // the certificate request's signature is bad
	ReasonKey       Reason = "key"        // unsupported or weak public key
	ReasonTTL       Reason = "ttl"        // negative lifetime
	ReasonCAExpired Reason = "ca_expired" // the signing CA's chain has expired, or is not valid yet by the CA's clock
	ReasonCluster   Reason = "cluster"    // ForCluster: no DNS label, or the CA is another cluster's
	ReasonInternal  Reason = "internal"   // signing failed
)

// Error is a refusal: of an X509-SVID by Verify or Authorizer, or of an
// issuance by Issue or SignCSR.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("x509-svid refused (%s): %v", e.Reason, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf is the Reason of the *Error in err's chain, or "" if there is none.
func ReasonOf(err error) Reason {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Reason
	}
	return ""
}

func refuse(reason Reason, format string, a ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, a...)}
}

// Verify checks chain (the leaf first, then intermediates) as an X509-SVID
// at time now (zero means the current time) against bundles, and returns its
// SPIFFE ID. go-spiffe's x509svid.Verify checks the chain up to a root of
// the ID's trust domain, the single URI SAN, and that the leaf is no CA and
// cannot sign certificates or CRLs. Verify adds the rest of the X509-SVID
// leaf rules: the ID names a workload (it has a path), the leaf has the
// digitalSignature key usage, and an extended key usage, if any, includes
// serverAuth and clientAuth. A refusal is an *Error whose Reason says which
// rule failed.
func Verify(chain []*x509.Certificate, bundles x509bundle.Source, now time.Time) (spiffeid.ID, error) {
	id, _, err := VerifyChain(chain, bundles, now)
	return id, err
}

// VerifyChain is Verify, and also returns the verified chain: the leaf,
// the intermediates that chain it to a root of the bundle, and that root.
// Only the verified chain may be read for claims (ClusterOf): the presented
// one can carry any certificate after the leaf.
func VerifyChain(chain []*x509.Certificate, bundles x509bundle.Source, now time.Time) (spiffeid.ID, []*x509.Certificate, error) {
	switch {
	case len(chain) == 0:
		return spiffeid.ID{}, nil, refuse(ReasonUntrusted, "empty certificate chain")
	case bundles == nil:
		return spiffeid.ID{}, nil, refuse(ReasonUntrusted, "no trust bundle")
	}
	id, err := checkLeaf(chain[0])
	if err != nil {
		return spiffeid.ID{}, nil, err
	}
	if _, err := bundles.GetX509BundleForTrustDomain(id.TrustDomain()); err != nil {
		return id, nil, refuse(ReasonTrustDomain, "%s: %w", id, err)
	}
	_, verified, err := x509svid.Verify(chain, bundles, x509svid.WithTime(now))
	if err != nil {
		if expired(err, chain, now) {
			return id, nil, refuse(ReasonExpired, "%s: %w", id, err)
		}
		return id, nil, refuse(ReasonUntrusted, "%s: %w", id, err)
	}
	if len(verified) == 0 || len(verified[0]) == 0 {
		return id, nil, refuse(ReasonUntrusted, "%s: no verified chain", id)
	}
	return id, verified[0], nil
}

// ClusterOf is the member cluster a verified X509-SVID chain (VerifyChain)
// is bound to, or "" when it names none. A cluster's intermediate CA
// (NewIntermediate, `horizon ca intermediate`) names its cluster in its
// subject: organization "Horizon" and the cluster as the single OU. So does
// a leaf that a CA belonging to no cluster issued ForCluster (the
// certificate API records the cluster whose token it reviewed). The nearest
// CA above the leaf that names a cluster decides; the leaf's own OU counts
// only when no CA of the chain names one, so that a cluster's intermediate
// can never issue for another cluster.
func ClusterOf(verified []*x509.Certificate) string {
	if len(verified) == 0 {
		return ""
	}
	for _, ca := range verified[1:] {
		if c := clusterName(ca); c != "" {
			return c
		}
	}
	return clusterName(verified[0])
}

// ClusterOrganization is the subject organization of a certificate that
// names a member cluster in its OU (ClusterOf).
const ClusterOrganization = "Horizon"

// clusterName is the cluster cert's subject names: its single OU, if its
// organization is ClusterOrganization and the OU a DNS label.
func clusterName(cert *x509.Certificate) string {
	ou, org := cert.Subject.OrganizationalUnit, cert.Subject.Organization
	if len(org) != 1 || org[0] != ClusterOrganization || len(ou) != 1 || len(validation.IsDNS1123Label(ou[0])) > 0 {
		return ""
	}
	return ou[0]
}

// expired says whether a certificate of chain is outside its validity at
// now, or crypto/x509 said one (a root, say) is.
func expired(err error, chain []*x509.Certificate, now time.Time) bool {
	if invalid, ok := errors.AsType[x509.CertificateInvalidError](err); ok && invalid.Reason == x509.Expired {
		return true
	}
	if now.IsZero() {
		now = time.Now()
	}
	for _, cert := range chain {
		if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
			return true
		}
	}
	return false
}

// Authorizer applies the leaf rules of checkLeaf that go-spiffe's TLS
// verification leaves out, then next. Use it in every spiffetls/tlsconfig
// configuration, so a handshake accepts what Verify accepts.
func Authorizer(next tlsconfig.Authorizer) tlsconfig.Authorizer {
	return func(id spiffeid.ID, verifiedChains [][]*x509.Certificate) error {
		if len(verifiedChains) == 0 || len(verifiedChains[0]) == 0 {
			return refuse(ReasonUntrusted, "%s: no verified chain", id)
		}
		if _, err := checkLeaf(verifiedChains[0][0]); err != nil {
			return err
		}
		return next(id, verifiedChains)
	}
}

// checkLeaf applies the SPIFFE X509-SVID rules for a leaf:
//
//   - exactly one URI SAN, a SPIFFE ID with a path (a workload, not the trust
//     domain itself);
//   - not a CA;
//   - key usage digitalSignature, and neither keyCertSign nor cRLSign;
//   - if it has an extended key usage, it includes serverAuth and clientAuth.
//
// go-spiffe's x509svid.Verify checks only the first half of these.
func checkLeaf(leaf *x509.Certificate) (spiffeid.ID, error) {
	switch len(leaf.URIs) {
	case 1:
	case 0:
		return spiffeid.ID{}, refuse(ReasonURISAN, "leaf %q has no URI SAN", leaf.Subject)
	default:
		return spiffeid.ID{}, refuse(ReasonURISAN, "leaf %q has %d URI SANs, want one", leaf.Subject, len(leaf.URIs))
	}
	id, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return spiffeid.ID{}, refuse(ReasonID, "leaf URI SAN %q: %w", leaf.URIs[0], err)
	}
	switch {
	case id.Path() == "":
		return id, refuse(ReasonID, "%s: the trust domain's own ID is not a workload ID", id)
	case leaf.IsCA:
		return id, refuse(ReasonCALeaf, "%s: the leaf is a CA certificate", id)
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return id, refuse(ReasonKeyUsage, "%s: the leaf may sign certificates or CRLs", id)
	case leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return id, refuse(ReasonKeyUsage, "%s: the leaf lacks the digitalSignature key usage", id)
	}
	if len(leaf.ExtKeyUsage) > 0 || len(leaf.UnknownExtKeyUsage) > 0 {
		if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) &&
			!(slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth)) {
			return id, refuse(ReasonKeyUsage, "%s: the leaf's extended key usage lacks serverAuth or clientAuth", id)
		}
	}
	return id, nil
}
