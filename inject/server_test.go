package inject

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
)

// TestKeyPairFilesReload: a renewed pair is served; a broken one keeps the
// last good pair.
func TestKeyPairFilesReload(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root, err := certs.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func() []byte {
		key, err := certs.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		svid, err := root.Issue(key.Public(), spiffeid.RequireFromPath(td, "/ns/horizon-system/sa/horizon"), time.Hour, certs.WithServingNames([]string{"horizon-injector.horizon-system.svc"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := certs.EncodeKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certFile, certs.EncodeCertificates(svid.Certificates...), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		return svid.Leaf().Raw
	}
	first := write()
	get, err := KeyPairFiles(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	served := func() []byte {
		c, err := get(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificate[0]
	}
	if !bytes.Equal(served(), first) {
		t.Fatal("not the first pair")
	}
	second := write()
	if !bytes.Equal(served(), second) {
		t.Fatal("the renewed pair is not served")
	}
	if err := os.WriteFile(keyFile, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served(), second) {
		t.Fatal("a broken pair replaced the last good one")
	}
	if _, err := KeyPairFiles(certFile, keyFile); err == nil {
		t.Fatal("a broken pair accepted at start")
	}
}
