package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("example.org")
	horizon = spiffeid.RequireFromString("spiffe://example.org/ns/horizon-system/sa/horizon")
)

// writeSVID issues an SVID for id under ca into dir (svid.crt, svid.key,
// bundle.crt), dated at, and returns its certificate chain as TLS holds it.
func writeSVID(t *testing.T, ca *certs.CA, id spiffeid.ID, dir string, at time.Time) tls.Certificate {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(key.Public(), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files, err := certs.SVIDFiles(svid, key, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteFiles(dir, files, true); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.Chtimes(filepath.Join(dir, f.Name), at, at); err != nil {
			t.Fatal(err)
		}
	}
	c := tls.Certificate{PrivateKey: key}
	for _, x := range svid.Certificates {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func newRoot(t *testing.T) *certs.CA {
	t.Helper()
	root, err := certs.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestServerReloads: the server's credentials follow the files, and a bad
// rewrite keeps the last good ones.
func TestServerReloads(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t)
	t0 := time.Now().Add(-time.Hour)
	first := writeSVID(t, root, horizon, dir, t0)
	path := func(name string) string { return filepath.Join(dir, name) }
	s, err := NewServer(path(certs.SVIDFile), path(certs.SVIDKeyFile), path(certs.BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	serving := func() []byte {
		t.Helper()
		conf, err := s.Config().GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		if conf.ClientAuth != tls.RequireAndVerifyClientCert || conf.ClientCAs == nil {
			t.Fatalf("client certificates are not required: %v", conf.ClientAuth)
		}
		return conf.Certificates[0].Certificate[0]
	}
	if !bytes.Equal(serving(), first.Certificate[0]) {
		t.Fatal("not serving the files' certificate")
	}
	second := writeSVID(t, root, horizon, dir, t0.Add(time.Minute))
	if !bytes.Equal(serving(), second.Certificate[0]) {
		t.Fatal("rewritten files were not reloaded")
	}
	if err := os.WriteFile(path(certs.SVIDKeyFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path(certs.SVIDKeyFile), t0.Add(2*time.Minute), t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(serving(), second.Certificate[0]) {
		t.Fatal("a bad key replaced the last good credentials")
	}
	if _, err := NewServer(path("none.crt"), path(certs.SVIDKeyFile), path(certs.BundleFile)); err == nil {
		t.Error("a missing certificate file was accepted")
	}
}

// TestSVIDDirClient: a client with an SVID directory connects to a server
// whose SVID carries the expected ID, and to no other.
func TestSVIDDirClient(t *testing.T) {
	root := newRoot(t)
	dir := t.TempDir()
	writeSVID(t, root, spiffeid.RequireFromString("spiffe://example.org/ns/demo/sa/gateway"), dir, time.Now())
	conf, err := SVIDDirClient(dir, td, horizon)
	if err != nil {
		t.Fatal(err)
	}
	handshake := func(server tls.Certificate) error {
		c, s := net.Pipe()
		defer c.Close()
		defer s.Close()
		srv := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.RequireAnyClientCert})
		go srv.Handshake()
		return tls.Client(c, conf).Handshake()
	}
	if err := handshake(writeSVID(t, root, horizon, t.TempDir(), time.Now())); err != nil {
		t.Errorf("Horizon refused: %v", err)
	}
	other := spiffeid.RequireFromString("spiffe://example.org/ns/demo/sa/impostor")
	if err := handshake(writeSVID(t, root, other, t.TempDir(), time.Now())); err == nil {
		t.Error("a server with another SPIFFE ID was accepted")
	}
	if err := handshake(writeSVID(t, newRoot(t), horizon, t.TempDir(), time.Now())); err == nil {
		t.Error("a server under another root was accepted")
	}
	if _, err := SVIDDirClient(t.TempDir(), td, horizon); err == nil {
		t.Error("a directory without an SVID was accepted")
	}
}
