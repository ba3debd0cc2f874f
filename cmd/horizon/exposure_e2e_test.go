package main

// What `horizon serve` exposes, tried from outside: plaintext xDS only on
// loopback and off when an mTLS source is configured, /debug/ over mutual
// TLS to admin identities only, and no key material in any response.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// TestE2EPlaintextIsLocal: before, --xds-address "" gave a random port on
// every interface, the default bound every interface (:15010), and plaintext
// could not be switched off next to the mTLS port.
func TestE2EPlaintextIsLocal(t *testing.T) {
	bin := buildHorizon(t)
	root := certtest.Root(t, spiffeid.RequireTrustDomainFromString("cluster.local"))
	caDir := t.TempDir()
	writeCADir(t, caDir, root)

	// With an mTLS source and no --xds-address, or --xds-address "", there
	// is no plaintext port.
	for _, extra := range [][]string{nil, {"--xds-address", ""}} {
		httpAddr := freeLoopbackAddr(t)
		args := append([]string{"serve", "--ca-dir", caDir, "--mtls-address", freeLoopbackAddr(t), "--http-address", httpAddr}, extra...)
		out := runUntilReady(t, bin, httpAddr, args...)
		if strings.Contains(out, "plaintext") {
			t.Errorf("horizon %s serves plaintext:\n%s", strings.Join(args, " "), out)
		}
	}
	// Beyond loopback only when asked for, with a warning.
	cmd := exec.Command(bin, "serve", "--xds-address", "0.0.0.0:0", "--http-address", freeLoopbackAddr(t))
	out, err := cmd.CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "--plaintext-remote") {
		t.Errorf("plaintext on every interface without --plaintext-remote: exit %d\n%s", code, out)
	}
	httpAddr := freeLoopbackAddr(t)
	got := runUntilReady(t, bin, httpAddr, "serve", "--xds-address", "0.0.0.0:0", "--plaintext-remote", "--http-address", httpAddr)
	if !strings.Contains(got, "level=WARN") || !strings.Contains(got, "plaintext xDS beyond loopback") {
		t.Errorf("--plaintext-remote without a warning at start:\n%s", got)
	}
	// Nothing at all to serve is an error, not a silent control plane.
	out, err = exec.Command(bin, "serve", "--xds-address", "", "--http-address", freeLoopbackAddr(t)).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "nothing to serve") {
		t.Errorf("no xDS port at all: exit %d\n%s", code, out)
	}
	// The default is loopback.
	if def := newServeCommand().Flags().Lookup("xds-address").DefValue; !isLoopback(def) {
		t.Errorf("--xds-address defaults to %q", def)
	}
}

// runUntilReady starts horizon with args, waits for /readyz on httpAddr,
// stops it and returns its output.
func runUntilReady(t *testing.T, bin, httpAddr string, args ...string) string {
	t.Helper()
	var out testkit.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	testkit.Eventually(t, e2eWait, "horizon ready", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return out.String()
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestE2EDebugOverMTLS: /debug/ answers non-loopback clients only over
// mutual TLS and only admin identities; no response of any page holds key
// material. Before, --debug-remote opened /debug/ to the whole network
// without a credential.
func TestE2EDebugOverMTLS(t *testing.T) {
	bin := buildHorizon(t)
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root := certtest.Root(t, td)
	caDir := t.TempDir()
	writeCADir(t, caDir, root)
	debugAddr := freeLoopbackAddr(t)
	h := startHorizon(t, bin, "--ca-dir", caDir, "--mtls-address", freeLoopbackAddr(t), "--debug-mtls-address", debugAddr,
		"--debug-admin-id", "spiffe://cluster.local/ns/horizon-system/sa/admin")

	get := func(svid *x509svid.SVID, path string) (int, string, error) {
		conf := &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "horizon"}
		conf.RootCAs.AddCert(root.Certificate())
		conf.InsecureSkipVerify = true // the SPIFFE ID, not a host name, names the server
		if svid != nil {
			var chain [][]byte
			for _, c := range svid.Certificates {
				chain = append(chain, c.Raw)
			}
			conf.Certificates = []tls.Certificate{{Certificate: chain, PrivateKey: svid.PrivateKey}}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 5 * time.Second}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + debugAddr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	admin := certtest.SVID(t, root, "spiffe://cluster.local/ns/horizon-system/sa/admin")
	other := certtest.SVID(t, root, "spiffe://cluster.local/ns/demo/sa/echo")
	if code, _, err := get(admin, "/debug/syncz"); err != nil || code != http.StatusOK {
		t.Fatalf("an admin: %d %v", code, err)
	}
	if code, body, err := get(other, "/debug/syncz"); err != nil || code != http.StatusForbidden {
		t.Errorf("another identity: %d %q %v, want 403", code, body, err)
	}
	if _, _, err := get(nil, "/debug/syncz"); err == nil {
		t.Error("a client without a certificate got an answer")
	}

	// No key material in any response, on either port.
	keys := keyMaterial(t, caDir)
	for _, path := range []string{"/debug/syncz", "/debug/views", "/debug/clusterset", "/debug/members", "/debug/gateways", "/debug/config_dump?proxy=x",
		"/debug/explain?service=echo.demo.svc.clusterset.local:7070&from=us-east", "/metrics", "/healthz"} {
		_, body, err := get(admin, path)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h.http.Get("http://" + h.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, b := range []string{body, string(plain)} {
			if strings.Contains(b, "PRIVATE KEY") {
				t.Errorf("%s: a PEM private key in the response", path)
			}
			for _, k := range keys {
				if strings.Contains(b, k) {
					t.Errorf("%s: the CA's key in the response", path)
				}
			}
		}
	}
}

// keyMaterial is every private key under dir, as lines of its PEM body (a
// response holding any of them holds key material).
func keyMaterial(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".key") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			body := string(pem.EncodeToMemory(blk))
			for line := range strings.SplitSeq(body, "\n") {
				if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
					out = append(out, line)
				}
			}
		}
		return nil
	})
	if len(out) == 0 {
		t.Fatalf("no key found under %s", dir)
	}
	return out
}
