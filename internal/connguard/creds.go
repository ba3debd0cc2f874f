package connguard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"google.golang.org/grpc/credentials"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/internal/ratelog"
)

// creds are a port's transport credentials as gRPC sees them: the port's
// own (nil in plaintext), with failed handshakes counted and logged, and
// the resulting connection watched (h2Conn).
type creds struct {
	inner credentials.TransportCredentials // nil: plaintext
	g     *Guard
}

func (c *creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if c.inner == nil {
		return newH2Conn(c.g, raw, raw), nil, nil
	}
	conn, info, err := c.inner.ServerHandshake(raw)
	if err != nil {
		c.g.handshakeFailed(raw, err)
		return nil, nil, err // unwrapped: gRPC compares it with io.EOF
	}
	return newH2Conn(c.g, conn, raw), info, nil
}

func (c *creds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if c.inner == nil {
		return conn, nil, nil
	}
	return c.inner.ClientHandshake(ctx, authority, conn)
}

func (c *creds) Info() credentials.ProtocolInfo {
	if c.inner == nil {
		return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
	}
	return c.inner.Info()
}

func (c *creds) Clone() credentials.TransportCredentials {
	if c.inner == nil {
		return &creds{g: c.g}
	}
	return &creds{inner: c.inner.Clone(), g: c.g}
}

func (c *creds) OverrideServerName(name string) error {
	if c.inner == nil {
		return nil
	}
	return c.inner.OverrideServerName(name) //nolint:staticcheck // part of the interface
}

// handshakeFailed counts a failed handshake by reason and logs it with the
// peer's address, at most once per reason and source an interval. A
// client that goes away first (a TCP health probe) is counted only.
func (g *Guard) handshakeFailed(raw net.Conn, err error) {
	reason := handshakeReason(err)
	if reason != HandshakeClosed {
		g.log.Warn("tls|"+reason+"|"+sourceOf(raw.RemoteAddr()), "TLS handshake failed",
			"port", g.port, "peer", raw.RemoteAddr().String(), "reason", reason, "err", ratelog.Truncate(err.Error(), 300))
	}
	g.metrics.handshakeFailed(g.port, reason) // after the log line, so that a test that sees the count sees the line
}

// handshakeReason sorts what a failed TLS handshake returned into one of
// the bounded handshake reasons. Horizon's own verification (certs.Verify,
// in a VerifyPeerCertificate) says why with certs.ReasonOf; crypto/tls's
// verification (ClientCAs) returns crypto/x509's errors; crypto/tls's
// protocol errors carry its "tls: " prefix.
func handshakeReason(err error) string {
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return HandshakeTimeout
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return HandshakeClosed
	}
	switch certs.ReasonOf(err) {
	case "":
	case certs.ReasonUntrusted:
		return HandshakeUntrusted
	case certs.ReasonTrustDomain:
		return HandshakeTrustDomain
	case certs.ReasonExpired:
		return HandshakeExpired
	default: // ca_leaf, key_usage, uri_san, id
		return HandshakeBadCertificate
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return HandshakeUntrusted
	}
	if invalid, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		if invalid.Reason == x509.Expired {
			return HandshakeExpired
		}
		return HandshakeBadCertificate
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return HandshakeBadCertificate
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" {
		return HandshakeClientAlert // crypto/tls's form of an alert the peer sent
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return HandshakeProtocol
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "didn't provide a certificate"):
		return HandshakeNoCertificate
	case strings.Contains(msg, "trust domain"): // certsvc.ServerTLS's own check
		return HandshakeTrustDomain
	case strings.Contains(msg, "x509:"), strings.Contains(msg, "certificate"):
		return HandshakeBadCertificate
	case strings.HasPrefix(msg, "tls: "), strings.Contains(msg, "ALPN"):
		return HandshakeProtocol
	}
	return HandshakeOther
}
