package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// What `horizon serve` exposes, and to whom:
//
//   - plaintext xDS (--xds-address): loopback only unless --plaintext-remote,
//     off when an mTLS source is configured unless --xds-address is given,
//     off with --xds-address "". No client is authenticated there.
//   - mutual-TLS xDS and the certificate API (--mtls-address): every claim is
//     bound to the client's verified certificate (server.Trust).
//   - HTTP (--http-address): /metrics, /healthz, /readyz to anyone who can
//     reach it; /debug/ to loopback clients only.
//   - /debug/ over mutual TLS (--debug-mtls-address): only to clients whose
//     SPIFFE ID matches --debug-admin-id.

// plaintextAddress is where plaintext xDS listens: "" for nowhere. With an
// mTLS source configured it is off unless --xds-address was given; a
// non-loopback address needs --plaintext-remote.
func (cfg serveConfig) plaintextAddress(mtls bool) (string, error) {
	addr := cfg.xdsAddress
	if mtls && !cfg.xdsAddressSet {
		return "", nil
	}
	if addr == "" {
		return "", nil
	}
	if !isLoopback(addr) && !cfg.plaintextRemote {
		return "", fmt.Errorf("--xds-address %s is not a loopback address: plaintext xDS authenticates no proxy, so any client reaching it gets any cluster's view; use the mTLS port (--ca-dir, --spire-socket or --tls-cert), or accept that with --plaintext-remote", addr)
	}
	return addr, nil
}

// isLoopback says whether a listen address binds loopback only. An empty or
// unspecified host binds every interface; a host name other than localhost
// may resolve to anything.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackOnly serves h to loopback clients only (kubectl port-forward
// arrives from loopback inside the pod).
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "forbidden: /debug/ answers loopback clients, or admins over mutual TLS (--debug-mtls-address)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// adminOnly serves h to mutual-TLS clients whose verified SPIFFE ID matches
// one of admins (path.Match patterns).
func adminOnly(h http.Handler, admins []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "forbidden: a client certificate is required", http.StatusForbidden)
			return
		}
		id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
		if err == nil {
			for _, p := range admins {
				if ok, _ := path.Match(p, id.String()); ok {
					h.ServeHTTP(w, r)
					return
				}
			}
		}
		http.Error(w, "forbidden: not an admin identity (--debug-admin-id)", http.StatusForbidden)
	})
}

// debugTLS is the mTLS port's TLS configuration with a client certificate
// required: the port's own verification (the CA's bundle, SPIRE's, or the
// client CA file) still decides whether it is valid.
func debugTLS(base *tls.Config) *tls.Config {
	c := base.Clone()
	switch c.ClientAuth {
	case tls.RequestClientCert:
		c.ClientAuth = tls.RequireAnyClientCert // VerifyPeerCertificate verifies it
	case tls.NoClientCert, tls.VerifyClientCertIfGiven:
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// repeated is a flag given once per value (--gateway-identity A
// --gateway-identity B); its help names its value "string".
type repeated []string

func (r *repeated) String() string { return strings.Join(*r, ",") }

func (r *repeated) Set(v string) error {
	*r = append(*r, v)
	return nil
}

func (r *repeated) Type() string { return "string" }
