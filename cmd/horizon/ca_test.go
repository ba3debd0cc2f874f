package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
)

func runCA(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), append([]string{"ca"}, args...), &out, &errb)
	return out.String() + errb.String(), err
}

func mustRunCA(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCA(t, args...)
	if err != nil {
		t.Fatalf("horizon ca %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// init → intermediate (east, west) → issue, then the SVIDs verify with the
// root alone.
func TestCAEndToEnd(t *testing.T) {
	dir := t.TempDir()
	rootDir, eastDir, westDir := filepath.Join(dir, "root"), filepath.Join(dir, "east"), filepath.Join(dir, "west")

	out := mustRunCA(t, "init", "--trust-domain", "mesh.example.com", "--out", rootDir)
	rootPEM, err := os.ReadFile(filepath.Join(rootDir, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := certs.ParseCertificates(rootPEM)
	if err != nil || len(roots) != 1 {
		t.Fatalf("root.crt: %v, %d certificates", err, len(roots))
	}
	fingerprint := certs.Fingerprint(roots[0])
	for _, want := range []string{filepath.Join(rootDir, "root.crt"), filepath.Join(rootDir, "root.key") + " (mode 0600)", "mesh.example.com", fingerprint} {
		if !strings.Contains(out, want) {
			t.Errorf("init output does not say %q:\n%s", want, out)
		}
	}
	assertModes(t, rootDir, map[string]os.FileMode{"root.crt": 0o644, "root.key": 0o600})

	for _, c := range []struct{ cluster, dir string }{{"east", eastDir}, {"west", westDir}} {
		out := mustRunCA(t, "intermediate", "--cluster", c.cluster, "--root-dir", rootDir, "--out", c.dir, "--ttl", "720h")
		if !strings.Contains(out, fingerprint) || !strings.Contains(out, "cluster "+c.cluster) {
			t.Errorf("intermediate output:\n%s", out)
		}
		assertModes(t, c.dir, map[string]os.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "root.crt": 0o644})
		ca, err := certs.LoadDir(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		if ca.Cluster() != c.cluster || ca.IsRoot() || !ca.Root().Equal(roots[0]) {
			t.Errorf("%s: cluster %q root %v", c.dir, ca.Cluster(), ca.IsRoot())
		}
		if d := time.Until(ca.Certificate().NotAfter); d < 719*time.Hour || d > 721*time.Hour {
			t.Errorf("%s: --ttl 720h gave %v", c.dir, d)
		}
	}

	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("mesh.example.com"), roots)
	for _, c := range []struct{ caDir, id string }{
		{eastDir, "spiffe://mesh.example.com/ns/demo/sa/echo"},
		{westDir, "spiffe://mesh.example.com/ns/shop/sa/cart"},
		{rootDir, "spiffe://mesh.example.com/ns/horizon-system/sa/horizon"},
	} {
		svidDir := filepath.Join(dir, "svid-"+filepath.Base(c.caDir))
		out := mustRunCA(t, "issue", "--ca-dir", c.caDir, "--id", c.id, "--out", svidDir, "--ttl", "1h")
		if !strings.Contains(out, c.id) || !strings.Contains(out, fingerprint) {
			t.Errorf("issue output:\n%s", out)
		}
		assertModes(t, svidDir, map[string]os.FileMode{"svid.crt": 0o644, "svid.key": 0o600, "bundle.crt": 0o644})
		chainPEM, err := os.ReadFile(filepath.Join(svidDir, "svid.crt"))
		if err != nil {
			t.Fatal(err)
		}
		chain, err := certs.ParseCertificates(chainPEM)
		if err != nil {
			t.Fatal(err)
		}
		id, err := certs.Verify(chain, bundle, time.Time{})
		if err != nil || id.String() != c.id {
			t.Errorf("%s: Verify: %v, %v", c.id, id, err)
		}
		if d := time.Until(chain[0].NotAfter); d > time.Hour || d < 59*time.Minute {
			t.Errorf("%s: --ttl 1h gave %v", c.id, d)
		}
		// The files load as a go-spiffe SVID and bundle.
		keyPEM, err := os.ReadFile(filepath.Join(svidDir, "svid.key"))
		if err != nil {
			t.Fatal(err)
		}
		key, err := certs.ParseKey(keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (&certs.SVID{ID: id, Certificates: chain}).WithKey(key); err != nil {
			t.Error(err)
		}
		bundlePEM, err := os.ReadFile(filepath.Join(svidDir, "bundle.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if b, err := x509bundle.Parse(bundle.TrustDomain(), bundlePEM); err != nil || !b.Equal(bundle) {
			t.Errorf("bundle.crt: %v", err)
		}
	}

	// An ID of another trust domain is refused.
	if out, err := runCA(t, "issue", "--ca-dir", eastDir, "--id", "spiffe://other.org/ns/demo/sa/echo", "--out", filepath.Join(dir, "other")); err == nil || !strings.Contains(err.Error(), "trust domain") {
		t.Errorf("issue for another trust domain: %v\n%s", err, out)
	}
}

func TestCAForce(t *testing.T) {
	dir := t.TempDir()
	mustRunCA(t, "init", "--trust-domain", "example.org", "--out", dir)
	key, err := os.ReadFile(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := runCA(t, "init", "--trust-domain", "example.org", "--out", dir)
	if err == nil || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), filepath.Join(dir, "root.key")) {
		t.Fatalf("init over an existing root: %v\n%s", err, out)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "root.key")); !bytes.Equal(again, key) {
		t.Fatal("root.key overwritten without --force")
	}
	if err := os.Chmod(filepath.Join(dir, "root.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRunCA(t, "init", "--trust-domain", "example.org", "--out", dir, "--force")
	if again, _ := os.ReadFile(filepath.Join(dir, "root.key")); bytes.Equal(again, key) {
		t.Error("root.key not replaced with --force")
	}
	assertModes(t, dir, map[string]os.FileMode{"root.key": 0o600})
}

func TestCARejects(t *testing.T) {
	dir := t.TempDir()
	mustRunCA(t, "init", "--trust-domain", "example.org", "--out", filepath.Join(dir, "root"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"init", "--out", dir}, "--trust-domain is required"},
		{[]string{"init", "--trust-domain", "Example.ORG", "--out", dir}, "--trust-domain"},
		{[]string{"init", "--trust-domain", "example.org"}, "--out is required"},
		{[]string{"init", "--trust-domain", "example.org", "--out", dir, "extra"}, "unexpected arguments"},
		{[]string{"intermediate", "--cluster", "east", "--root-dir", filepath.Join(dir, "nope"), "--out", dir}, "neither ca.key nor root.key"},
		{[]string{"intermediate", "--cluster", "East", "--root-dir", filepath.Join(dir, "root"), "--out", filepath.Join(dir, "x")}, "cluster"},
		{[]string{"issue", "--ca-dir", filepath.Join(dir, "root"), "--id", "https://example.org/x", "--out", dir}, "--id"},
		{[]string{"issue", "--ca-dir", filepath.Join(dir, "root"), "--id", "spiffe://example.org/ns/a/sa/b", "--out", dir, "--ttl", "-1h"}, "--ttl"},
		{[]string{"rotate"}, "unknown command"},
	} {
		out, err := runCA(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ca %s: err %v, want it to say %q\n%s", strings.Join(c.args, " "), err, c.want, out)
		}
	}
	if out, err := runCA(t); err != nil || !strings.Contains(out, "intermediate") {
		t.Errorf("ca without a command: %v, not its help:\n%s", err, out)
	}
}

func assertModes(t *testing.T, dir string, want map[string]os.FileMode) {
	t.Helper()
	for name, mode := range want {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s: mode %04o, want %04o", name, info.Mode().Perm(), mode)
		}
	}
}
