package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/xds"
)

// Identity is who a stream's proxy is, as its verified credential says.
type Identity struct {
	ID             spiffeid.ID
	Namespace      string
	ServiceAccount string
	// Cluster is the member cluster the credential binds the proxy to (see
	// Trust), or "" when it binds none.
	Cluster string
}

// Trust is what binds the claims of a stream on a TLS port to its verified
// credential. A proxy's node metadata is a claim: on the mutual-TLS port
// each claim must agree with the credential, or the stream is refused.
//
//   - NAMESPACE, SERVICE_ACCOUNT: the SPIFFE ID's /ns/<ns>/sa/<sa>.
//   - CLUSTER_ID: the member cluster of the verified chain (certs.ClusterOf:
//     a cluster's intermediate CA, or a leaf the certificate API marked with
//     the cluster whose token it reviewed); for credentials that name none
//     (SPIRE, an operator's PKI), the first of Clusters whose pattern
//     matches the SPIFFE ID. A credential bound to no cluster gets no view.
//   - ROLE=gateway: only identities matching one of Gateways.
//   - NETWORK: the cluster's (xds.Proxy.Resolve); the locality is clamped to
//     one the ClusterSet knows in the cluster (discovery.ClampLocality).
type Trust struct {
	// Bundles verifies a client's chain again, so that the cluster is read
	// from the verified chain, never from what the client presented after
	// its leaf. nil uses the chains the TLS handshake verified (a handshake
	// with its own VerifyPeerCertificate keeps none: set Bundles then).
	Bundles x509bundle.Source
	// Clusters bind SPIFFE IDs to member clusters for credentials whose
	// chain names no cluster.
	Clusters []ClusterRule
	// Gateways are the SPIFFE ID patterns (path.Match) of identities that
	// may declare ROLE=gateway.
	Gateways []string
	// Now is the clock chains are verified at (default time.Now).
	Now func() time.Time
}

// ClusterRule binds the SPIFFE IDs matching Pattern (path.Match: '*' does
// not cross '/') to the member cluster Cluster.
type ClusterRule struct {
	Pattern string
	Cluster string
}

// ParseClusterRule reads "PATTERN=CLUSTER", e.g.
// "spiffe://example.org/ns/*/sa/*=east-1".
func ParseClusterRule(s string) (ClusterRule, error) {
	pattern, cluster, ok := strings.Cut(s, "=")
	if !ok || pattern == "" || cluster == "" {
		return ClusterRule{}, fmt.Errorf("%q: want SPIFFE-ID-PATTERN=CLUSTER", s)
	}
	if err := CheckIDPattern(pattern); err != nil {
		return ClusterRule{}, err
	}
	if !discovery.IsDNSLabel(cluster) {
		return ClusterRule{}, fmt.Errorf("%q: cluster %q is not a DNS label", s, cluster)
	}
	return ClusterRule{Pattern: pattern, Cluster: cluster}, nil
}

// CheckIDPattern reports whether p is a usable SPIFFE ID pattern: a
// spiffe:// URI whose path.Match syntax is valid.
func CheckIDPattern(p string) error {
	if !strings.HasPrefix(p, "spiffe://") {
		return fmt.Errorf("SPIFFE ID pattern %q: must start with spiffe://", p)
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("SPIFFE ID pattern %q: %w", p, err)
	}
	return nil
}

func matchID(patterns []string, id spiffeid.ID) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, id.String()); ok {
			return true
		}
	}
	return false
}

// ErrIdentity marks a proxy whose credential does not support its claims.
var ErrIdentity = errors.New("identity mismatch")

// claimError is a claim its credential does not support: the field that
// says it, and the reason it is counted under.
type claimError struct {
	reason string // horizon_xds_rejected_streams_total reason
	field  string // the node metadata field
	err    error
}

func (e *claimError) Error() string { return e.err.Error() }
func (e *claimError) Unwrap() error { return ErrIdentity }

func claimed(reason, field, format string, a ...any) *claimError {
	return &claimError{reason: reason, field: field, err: fmt.Errorf("%w: "+format, append([]any{ErrIdentity}, a...)...)}
}

// streamIdentity reads the SPIFFE ID of a stream's peer from its TLS client
// certificate, and the member cluster from its verified chain. Plaintext
// streams (the local development port) have no identity; a TLS stream
// without a usable SVID is refused.
func (t Trust) streamIdentity(ctx context.Context, td spiffeid.TrustDomain) (*Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, nil // plaintext: bound to loopback unless the operator says otherwise
	}
	presented := info.State.PeerCertificates
	if len(presented) == 0 {
		return nil, fmt.Errorf("%w: no client certificate", ErrIdentity)
	}
	var verified []*x509.Certificate
	var id spiffeid.ID
	var err error
	if t.Bundles != nil {
		now := time.Now
		if t.Now != nil {
			now = t.Now
		}
		if id, verified, err = certs.VerifyChain(presented, t.Bundles, now()); err != nil {
			return nil, fmt.Errorf("%w: client certificate: %v", ErrIdentity, err)
		}
	} else {
		if len(info.State.VerifiedChains) > 0 {
			verified = info.State.VerifiedChains[0]
		}
		if id, err = x509svid.IDFromCert(presented[0]); err != nil {
			return nil, fmt.Errorf("%w: client certificate: %v", ErrIdentity, err)
		}
	}
	if id.TrustDomain() != td {
		return nil, fmt.Errorf("%w: %s is not in trust domain %s", ErrIdentity, id, td)
	}
	ident := &Identity{ID: id, Cluster: certs.ClusterOf(verified)}
	// Workload IDs are spiffe://<td>/ns/<ns>/sa/<sa> (discovery.WorkloadID).
	seg := strings.Split(id.Path(), "/")
	if len(seg) != 5 || seg[1] != "ns" || seg[3] != "sa" || seg[2] == "" || seg[4] == "" {
		return nil, fmt.Errorf("%w: %s is not a workload identity (spiffe://%s/ns/<ns>/sa/<sa>)", ErrIdentity, id, td)
	}
	ident.Namespace, ident.ServiceAccount = seg[2], seg[4]
	if ident.Cluster == "" {
		for _, r := range t.Clusters {
			if ok, _ := path.Match(r.Pattern, id.String()); ok {
				ident.Cluster = r.Cluster
				break
			}
		}
	}
	return ident, nil
}

// checkClaims compares a proxy's node metadata with its verified identity,
// and fills in what the metadata left out. Nothing the proxy says about
// itself is trusted on an authenticated stream unless its credential agrees.
// It runs after Resolve, which checked the cluster is a member and the
// network its own.
func (t Trust) checkClaims(p *xds.Proxy, ident *Identity) error {
	if ident == nil {
		return nil
	}
	if p.Namespace == "" {
		p.Namespace = ident.Namespace
	}
	if p.ServiceAccount == "" {
		p.ServiceAccount = ident.ServiceAccount
	}
	switch {
	case p.Namespace != ident.Namespace:
		return claimed("claim_namespace", xds.MetaNamespace, "node %q claims namespace %s, its certificate is %s", p.ID, p.Namespace, ident.ID)
	case p.ServiceAccount != ident.ServiceAccount:
		return claimed("claim_service_account", xds.MetaServiceAccount, "node %q claims service account %s, its certificate is %s", p.ID, p.ServiceAccount, ident.ID)
	case ident.Cluster == "":
		return claimed("cluster_unbound", xds.MetaClusterID, "node %q claims cluster %s, but its certificate %s is bound to no member cluster (no cluster intermediate, certificate-API mark or --identity-cluster rule)", p.ID, p.Cluster, ident.ID)
	case p.Cluster != ident.Cluster:
		return claimed("claim_cluster", xds.MetaClusterID, "node %q claims cluster %s, its certificate %s is bound to cluster %s", p.ID, p.Cluster, ident.ID, ident.Cluster)
	case p.Role == xds.Gateway && !matchID(t.Gateways, ident.ID):
		return claimed("claim_role", xds.MetaRole, "node %q claims ROLE=gateway, but %s is not a gateway identity (--gateway-identity)", p.ID, ident.ID)
	}
	return nil
}
