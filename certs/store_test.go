package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestStoreLoadRoundTrip(t *testing.T) {
	p := newPKI(t)
	for _, ca := range []*CA{p.root, p.east} {
		name := "root"
		if !ca.IsRoot() {
			name = ca.Cluster()
		}
		t.Run(name+"/dir", func(t *testing.T) {
			files, err := ca.Files()
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := WriteFiles(dir, files, false); err != nil {
				t.Fatal(err)
			}
			loaded, err := LoadDir(dir, WithClock(fixedClock(t0)))
			if err != nil {
				t.Fatal(err)
			}
			sameCA(t, loaded, ca)
		})
		t.Run(name+"/secret", func(t *testing.T) {
			data, err := ca.SecretData()
			if err != nil {
				t.Fatal(err)
			}
			if len(data) != 3 || data[CertFile] == nil || data[KeyFile] == nil || data[RootCertFile] == nil {
				t.Fatalf("secret keys %v", data)
			}
			loaded, err := LoadSecret(data, WithClock(fixedClock(t0)))
			if err != nil {
				t.Fatal(err)
			}
			sameCA(t, loaded, ca)
		})
	}
}

// sameCA checks that a loaded CA is the one stored: same chain, trust
// domain, cluster, bundle, and a key that signs SVIDs its users verify.
func sameCA(t *testing.T, got, want *CA) {
	t.Helper()
	gc, wc := got.Chain(), want.Chain()
	if len(gc) != len(wc) {
		t.Fatalf("chain of %d, want %d", len(gc), len(wc))
	}
	for i := range gc {
		if !gc[i].Equal(wc[i]) {
			t.Errorf("chain[%d] = %q, want %q", i, gc[i].Subject, wc[i].Subject)
		}
	}
	if got.TrustDomain() != want.TrustDomain() || got.Cluster() != want.Cluster() || got.IsRoot() != want.IsRoot() {
		t.Errorf("loaded td %v cluster %q root %v, want %v %q %v", got.TrustDomain(), got.Cluster(), got.IsRoot(), want.TrustDomain(), want.Cluster(), want.IsRoot())
	}
	if !got.Bundle().Equal(want.Bundle()) {
		t.Error("bundles differ")
	}
	svid := issue(t, got, echoID)
	if _, err := Verify(svid.Certificates, want.Bundle(), t0); err != nil {
		t.Errorf("SVID from the loaded CA: %v", err)
	}
}

func TestLoadRefuses(t *testing.T) {
	p := newPKI(t)
	foreign := newPKI(t)
	east, err := p.east.SecretData()
	if err != nil {
		t.Fatal(err)
	}
	west, err := p.west.SecretData()
	if err != nil {
		t.Fatal(err)
	}
	leafSVID, leafKey := issueKey(t, p.east, echoID)
	leafKeyPEM, err := EncodeKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	with := func(base map[string][]byte, k string, v []byte) map[string][]byte {
		m := map[string][]byte{CertFile: base[CertFile], KeyFile: base[KeyFile], RootCertFile: base[RootCertFile]}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name string
		data map[string][]byte
		opts []Option
		want []string // all in the error
	}{
		{"mismatched key", with(east, KeyFile, west[KeyFile]), nil,
			[]string{"ca.key", "does not match", "ca.crt"}},
		{"non-CA certificate", map[string][]byte{CertFile: EncodeCertificates(leafSVID.Certificates...), KeyFile: leafKeyPEM, RootCertFile: east[RootCertFile]}, nil,
			[]string{"ca.crt", "is not a CA"}},
		{"chain not to root", with(east, RootCertFile, EncodeCertificates(foreign.root.Certificate())), nil,
			[]string{"ca.crt", "does not chain to a root in", "root.crt"}},
		{"non-CA root", with(east, RootCertFile, EncodeCertificates(leafSVID.Leaf())), nil,
			[]string{"root.crt", "is not a CA"}},
		{"expired", east, []Option{WithClock(fixedClock(t0.Add(2 * DefaultIntermediateTTL)))},
			[]string{"ca.crt", "does not chain", "expired"}},
		{"other trust domain", east, []Option{WithTrustDomain(spiffeid.RequireTrustDomainFromString("other.org"))},
			[]string{"trust domain example.org", "other.org"}},
		{"missing key", with(east, KeyFile, nil), nil,
			[]string{"secret has no key ca.key"}},
		{"garbage certificate", with(east, CertFile, []byte("hello")), nil,
			[]string{"ca.crt", "not PEM"}},
		{"key where the certificate goes", with(east, CertFile, east[KeyFile]), nil,
			[]string{"ca.crt", "PRIVATE KEY", "want CERTIFICATE"}},
		{"certificate where the key goes", with(east, KeyFile, east[CertFile]), nil,
			[]string{"ca.key", "not a private key"}},
		{"empty root", with(east, RootCertFile, []byte{}), nil,
			[]string{"root.crt", "no PEM certificate"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := append([]Option{WithClock(fixedClock(t0))}, c.opts...)
			ca, err := LoadSecret(c.data, opts...)
			if err == nil {
				t.Fatalf("loaded %v", ca.Certificate().Subject)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// An operator's own PKI, made with openssl (testdata/operator-pki/make.sh):
// no SPIFFE IDs in the CA certificates, a SEC 1 key after EC PARAMETERS.
func TestLoadOperatorPKI(t *testing.T) {
	dir := filepath.Join("testdata", "operator-pki")
	root, err := os.ReadFile(filepath.Join(dir, RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := ParseCertificates(root)
	if err != nil {
		t.Fatal(err)
	}
	now := roots[0].NotBefore.Add(time.Hour)
	if _, err := LoadDir(dir, WithClock(fixedClock(now))); err == nil || !strings.Contains(err.Error(), "name the trust domain") {
		t.Fatalf("loaded without a trust domain: %v", err)
	}
	ca, err := LoadDir(dir, WithClock(fixedClock(now)), WithTrustDomain(td))
	if err != nil {
		t.Fatal(err)
	}
	if ca.Cluster() != "mesh" || ca.IsRoot() || ca.TrustDomain() != td {
		t.Errorf("cluster %q root %v td %v", ca.Cluster(), ca.IsRoot(), ca.TrustDomain())
	}
	// Its OU is no Horizon cluster (organization Example Corp): what it
	// signs is bound to no cluster.
	if ca.BoundCluster() != "" {
		t.Errorf("the operator's CA is bound to cluster %q", ca.BoundCluster())
	}
	ca, err = LoadDir(dir, WithClock(fixedClock(now)), WithTrustDomain(td), WithCluster("east"))
	if err != nil {
		t.Fatal(err)
	}
	if ca.Cluster() != "east" {
		t.Errorf("cluster %q, want east", ca.Cluster())
	}
	svid := issue(t, ca, echoID)
	if id, err := Verify(svid.Certificates, ca.Bundle(), now); err != nil || id != echoID {
		t.Errorf("SVID from the operator's intermediate: %v %v", id, err)
	}
	if _, err := LoadDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), KeyFile) {
		t.Errorf("empty directory: %v", err)
	}
}

func TestWriteFiles(t *testing.T) {
	p := newPKI(t)
	files, err := p.east.Files()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "east")
	if err := WriteFiles(dir, files, false); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		info, err := os.Stat(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		want := fs.FileMode(0o644)
		if strings.HasSuffix(f.Name, ".key") {
			want = 0o600
		}
		if info.Mode().Perm() != want || f.Mode != want {
			t.Errorf("%s mode %v (File says %v), want %v", f.Name, info.Mode().Perm(), f.Mode, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		t.Errorf("%d entries, want %d (temporary files left?)", len(entries), len(files))
	}

	// Without force nothing is overwritten, not even the files that do not
	// exist yet.
	other, err := p.west.Files()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, RootCertFile)); err != nil {
		t.Fatal(err)
	}
	err = WriteFiles(dir, other, false)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), filepath.Join(dir, KeyFile)) {
		t.Fatalf("overwrite without force: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, RootCertFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("wrote root.crt though it refused: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, KeyFile)); !bytes.Equal(got, files[1].Data) {
		t.Error("ca.key changed")
	}
	if err := WriteFiles(dir, other, true); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadDir(dir, WithClock(fixedClock(t0)))
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Cluster() != "west" {
		t.Errorf("after force: cluster %q", loaded.Cluster())
	}
	// A pre-existing key file with loose permissions is replaced by a 0600 one.
	if err := os.Chmod(filepath.Join(dir, KeyFile), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(dir, other, true); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(filepath.Join(dir, KeyFile)); info.Mode().Perm() != 0o600 {
		t.Errorf("overwritten key mode %v", info.Mode().Perm())
	}
}

func TestParseKeyFormats(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseKey(pkcs8)
	if err != nil || !publicKeyEqual(got.Public(), key.Public()) {
		t.Errorf("PKCS #8: %v", err)
	}
	if _, err := ParseKey(append(pkcs8, pkcs8...)); err == nil {
		t.Error("two keys accepted")
	}
	if _, err := ParseKey(nil); err == nil {
		t.Error("no key accepted")
	}
}

// TestEncodeBundleMap: the bundle map holds the bundle's trust domain, and
// under it the same roots, as a SPIFFE bundle reads them back.
func TestEncodeBundleMap(t *testing.T) {
	p := newPKI(t)
	other, err := NewRoot(td, WithClock(fixedClock(t0)))
	if err != nil {
		t.Fatal(err)
	}
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{p.root.Certificate(), other.Certificate()})
	data, err := EncodeBundleMap(bundle)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		TrustDomains map[string]json.RawMessage `json:"trust_domains"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.TrustDomains) != 1 || doc.TrustDomains[td.Name()] == nil {
		t.Fatalf("trust domains %v, want %s alone", slices.Collect(maps.Keys(doc.TrustDomains)), td)
	}
	got, err := spiffebundle.Parse(td, doc.TrustDomains[td.Name()])
	if err != nil {
		t.Fatal(err)
	}
	if !got.X509Bundle().Equal(bundle) {
		t.Errorf("bundle map holds %d roots, not the bundle's", len(got.X509Authorities()))
	}
}
