// Package certtest is a test CA built on package certs: roots, SVIDs with
// their keys, and TLS server identities, each one call that fails the test
// on error. Tests that need a deliberately malformed certificate build it
// themselves; everything ordinary comes from here.
package certtest

import (
	"crypto/tls"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/horizonmesh/horizon/certs"
)

// Root makes a new root CA for the trust domain td.
func Root(t testing.TB, td spiffeid.TrustDomain, opts ...certs.Option) *certs.CA {
	t.Helper()
	ca, err := certs.NewRoot(td, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// SVID issues an X509-SVID for id from ca, with a new key, valid for
// certs.DefaultSVIDTTL.
func SVID(t testing.TB, ca *certs.CA, id string) *x509svid.SVID {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ca.Issue(key.Public(), spiffeid.RequireFromString(id), 0)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.WithKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Server is a TLS server's identity: an SVID from a root of its own, and
// the bundle its clients verify it with.
type Server struct {
	SVID   *x509svid.SVID
	Bundle *x509bundle.Bundle
}

// NewServer issues a server identity for id, such as
// "spiffe://cluster.local/ns/demo/sa/echo", from a new root.
func NewServer(t testing.TB, id string) Server {
	t.Helper()
	root := Root(t, spiffeid.RequireFromString(id).TrustDomain())
	return Server{SVID: SVID(t, root, id), Bundle: root.Bundle()}
}

// ServerConfig is the server's side: it presents the SVID.
func (s Server) ServerConfig() *tls.Config { return tlsconfig.TLSServerConfig(s.SVID) }

// ClientConfig is a client's side: it sends serverName as SNI and accepts
// only a certificate that chains to the bundle and names the server's ID.
func (s Server) ClientConfig(serverName string) *tls.Config {
	cfg := tlsconfig.TLSClientConfig(s.Bundle, tlsconfig.AuthorizeID(s.SVID.ID))
	cfg.ServerName = serverName
	return cfg
}
