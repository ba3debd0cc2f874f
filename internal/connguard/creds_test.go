package connguard

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

const workloadID = "spiffe://example.org/ns/demo/sa/echo"

// TestHandshakeFailuresAreCounted connects to the mutual-TLS port, served
// as Horizon serves it when it is the CA (certsvc.ServerTLS), with each
// kind of bad client. Unguarded, every one is refused and nothing counts
// or logs it. Guarded, each is counted by its reason and logged with the
// peer's address, and a good client's call still carries its TLS identity.
func TestHandshakeFailuresAreCounted(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	root := certtest.Root(t, td)
	past := time.Now().Add(-48 * time.Hour)
	pastRoot := certtest.Root(t, td, certs.WithClock(func() time.Time { return past }))
	handRoot, handKey := selfSignedRoot(t, td)
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{root.Root(), pastRoot.Root(), handRoot})
	horizon := certtest.Server{SVID: certtest.SVID(t, root, "spiffe://example.org/ns/horizon-system/sa/horizon"), Bundle: root.Bundle()}
	srv := startServer(t, Config{
		Port:   "mtls",
		Creds:  credentials.NewTLS(certsvc.ServerTLS(horizon.SVID, bundle, td, time.Now)),
		Limits: Limits{HandshakeTimeout: 300 * time.Millisecond},
	})

	good := certtest.SVID(t, root, workloadID)
	if _, err := srv.client(t, credentials.NewTLS(clientTLS(good))).EmptyCall(context.Background(), &testpb.Empty{}); err != nil {
		t.Fatalf("a client with a good SVID: %v", err)
	}
	if info, ok := srv.svc.authInfo.Load().(credentials.TLSInfo); !ok || info.SPIFFEID == nil || info.SPIFFEID.String() != workloadID {
		t.Errorf("the handler's peer is %#v, want TLS with the client's SPIFFE ID", srv.svc.authInfo.Load())
	}

	foreign := certtest.SVID(t, certtest.Root(t, spiffeid.RequireTrustDomainFromString("other.org")), "spiffe://other.org/ns/demo/sa/echo")
	rogue := certtest.SVID(t, certtest.Root(t, td), workloadID)
	expired := issue(t, pastRoot, time.Hour)
	caLeaf := caAsLeaf(t, handRoot, handKey)
	distrusting := clientTLS(good)
	distrusting.InsecureSkipVerify = false
	distrusting.RootCAs = x509.NewCertPool() // trusts nothing, so not Horizon

	for _, tc := range []struct {
		name    string
		connect func(t *testing.T)
		want    string
		logged  string // in the log line besides the reason; "" for no line
	}{
		{"foreign trust domain", handshake(srv.addr, clientTLS(foreign)), HandshakeTrustDomain, "(trust_domain)"},
		{"rogue root", handshake(srv.addr, clientTLS(rogue)), HandshakeUntrusted, "(untrusted)"},
		{"expired SVID", handshake(srv.addr, clientTLS(expired)), HandshakeExpired, "(expired)"},
		{"CA certificate as leaf", handshake(srv.addr, clientTLS(caLeaf)), HandshakeBadCertificate, "(ca_leaf)"},
		{"client does not trust Horizon", handshake(srv.addr, distrusting), HandshakeClientAlert, "remote error"},
		{"garbage", rawSend(srv.addr, "GET / HTTP/1.1\r\nHost: horizon\r\n\r\n"), HandshakeProtocol, "does not look like a TLS handshake"},
		{"silence", rawSend(srv.addr, ""), HandshakeTimeout, "timeout"},
		{"probe", rawClose(srv.addr), HandshakeClosed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.handshakeFailures(tc.want)
			tc.connect(t)
			testkit.Eventually(t, 10*time.Second, "the failure counted as "+tc.want, func() bool {
				return srv.handshakeFailures(tc.want) == before+1
			})
			line := logLine(srv.log.String(), "reason="+tc.want)
			switch {
			case tc.logged == "" && line != "":
				t.Errorf("logged: %s", line)
			case tc.logged != "" && (!strings.Contains(line, tc.logged) || !strings.Contains(line, "peer=127.0.0.1:")):
				t.Errorf("log line %q, want the peer and %q", line, tc.logged)
			}
		})
	}
	for _, r := range handshakeReasons {
		if got := srv.handshakeFailures(r); got > 1 {
			t.Errorf("handshake failures{reason=%s} = %v, want at most 1", r, got)
		}
	}
}

// TestHandshakeReasons sorts the errors crypto/tls, crypto/x509 and
// certs.Verify return into the bounded reasons.
func TestHandshakeReasons(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errors.New("tls: client didn't provide a certificate"), HandshakeNoCertificate},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, HandshakeUntrusted},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, HandshakeExpired},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.IncompatibleUsage}}, HandshakeBadCertificate},
		{&tls.CertificateVerificationError{Err: errors.New("fips")}, HandshakeBadCertificate},
		{&certs.Error{Reason: certs.ReasonUntrusted, Err: errors.New("x")}, HandshakeUntrusted},
		{&certs.Error{Reason: certs.ReasonTrustDomain, Err: errors.New("x")}, HandshakeTrustDomain},
		{&certs.Error{Reason: certs.ReasonExpired, Err: errors.New("x")}, HandshakeExpired},
		{fmt.Errorf("wrapped: %w", &certs.Error{Reason: certs.ReasonCALeaf, Err: errors.New("x")}), HandshakeBadCertificate},
		{&certs.Error{Reason: certs.ReasonKeyUsage, Err: errors.New("x")}, HandshakeBadCertificate},
		{&certs.Error{Reason: certs.ReasonURISAN, Err: errors.New("x")}, HandshakeBadCertificate},
		{errors.New("client certificate: x509: malformed certificate"), HandshakeBadCertificate},
		{errors.New("client certificate spiffe://a/b is not in trust domain example.org"), HandshakeTrustDomain},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, HandshakeClientAlert},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, HandshakeProtocol},
		{errors.New("tls: client offered only unsupported versions: [301]"), HandshakeProtocol},
		{errors.New("tls: no cipher suite supported by both client and server"), HandshakeProtocol},
		{errors.New("credentials: cannot check peer: missing selected ALPN property"), HandshakeProtocol},
		{timeout, HandshakeTimeout},
		{io.EOF, HandshakeClosed},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, HandshakeClosed},
		{errors.New("something else"), HandshakeOther},
	} {
		if got := handshakeReason(tc.err); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
		}
	}
}

// clientTLS presents svid and does not check the server: these clients
// test the server's side.
func clientTLS(svid *x509svid.SVID) *tls.Config {
	cert := tls.Certificate{PrivateKey: svid.PrivateKey}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{"h2"}}
}

// handshake connects with conf and reads until the server ends the
// connection (in TLS 1.3 the server checks the client's certificate after
// the client has finished).
func handshake(addr string, conf *tls.Config) func(*testing.T) {
	return func(t *testing.T) {
		conn, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			return // refused during the client's part of the handshake
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, conn); err == nil {
			t.Fatal("the server served a connection it should have refused")
		}
	}
}

// rawSend writes data over TCP and reads until the server closes.
func rawSend(addr, data string) func(*testing.T) {
	return func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, data); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.Copy(io.Discard, conn)
	}
}

// rawClose connects and closes at once, as a TCP probe does.
func rawClose(addr string) func(*testing.T) {
	return func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
}

// logLine is the first line of log that contains s, or "".
func logLine(log, s string) string {
	for line := range strings.Lines(log) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// issue issues an X509-SVID for workloadID from ca, valid for ttl from the
// CA's clock.
func issue(t *testing.T, ca *certs.CA, ttl time.Duration) *x509svid.SVID {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ca.Issue(key.Public(), spiffeid.RequireFromString(workloadID), ttl)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.WithKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// selfSignedRoot makes a root CA for td by hand, to sign what package certs
// would never issue.
func selfSignedRoot(t *testing.T, td spiffeid.TrustDomain) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hand-made root"},
		URIs:      []*url.URL{td.ID().URL()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true,
	}
	return sign(t, tmpl, tmpl, key.Public(), key), key
}

// caAsLeaf is a CA certificate that names a workload, signed by a trusted
// root: an X509-SVID must not be a CA.
func caAsLeaf(t *testing.T, root *x509.Certificate, rootKey crypto.Signer) *x509svid.SVID {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(workloadID)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true,
	}
	leaf := sign(t, tmpl, root, key.Public(), rootKey)
	return &x509svid.SVID{ID: spiffeid.RequireFromString(workloadID), Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}

func sign(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
