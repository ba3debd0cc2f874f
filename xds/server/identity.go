package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/horizonmesh/horizon/xds"
)

// Identity is who a stream's proxy is, as its verified credential says.
type Identity struct {
	ID             spiffeid.ID
	Namespace      string
	ServiceAccount string
}

// ErrIdentity marks a proxy whose credential does not support its claims.
var ErrIdentity = errors.New("identity mismatch")

// streamIdentity reads the SPIFFE ID of a stream's peer from its TLS client
// certificate. Plaintext streams (the development port) have no identity;
// a TLS stream without a usable SVID is refused. The certificate itself was
// verified against the trust bundle by the TLS handshake.
func streamIdentity(ctx context.Context, td spiffeid.TrustDomain) (*Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, nil // plaintext: local development only
	}
	certs := info.State.PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no client certificate", ErrIdentity)
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return nil, fmt.Errorf("%w: client certificate: %v", ErrIdentity, err)
	}
	if id.TrustDomain() != td {
		return nil, fmt.Errorf("%w: %s is not in trust domain %s", ErrIdentity, id, td)
	}
	ident := &Identity{ID: id}
	// Workload IDs are spiffe://<td>/ns/<ns>/sa/<sa> (discovery.WorkloadID).
	seg := strings.Split(id.Path(), "/")
	if len(seg) != 5 || seg[1] != "ns" || seg[3] != "sa" || seg[2] == "" || seg[4] == "" {
		return nil, fmt.Errorf("%w: %s is not a workload identity (spiffe://%s/ns/<ns>/sa/<sa>)", ErrIdentity, id, td)
	}
	ns, sa := seg[2], seg[4]
	ident.Namespace, ident.ServiceAccount = ns, sa
	return ident, nil
}

// checkClaims compares a proxy's node metadata with its verified identity,
// and fills in what the metadata left out. Nothing the proxy says about
// itself is trusted on an authenticated stream unless its credential agrees.
func checkClaims(p *xds.Proxy, ident *Identity) error {
	if ident == nil {
		return nil
	}
	if p.Namespace == "" {
		p.Namespace = ident.Namespace
	}
	if p.ServiceAccount == "" {
		p.ServiceAccount = ident.ServiceAccount
	}
	if p.Namespace != ident.Namespace || p.ServiceAccount != ident.ServiceAccount {
		return fmt.Errorf("%w: node %q claims %s/%s, its certificate is %s", ErrIdentity, p.ID, p.Namespace, p.ServiceAccount, ident.ID)
	}
	return nil
}
