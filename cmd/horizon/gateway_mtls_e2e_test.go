package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// TestE2EGatewayOverMTLS: `horizon gateway --cert-dir` takes its
// configuration from Horizon's mutual-TLS port with its own SVID, and passes
// TLS through by SNI to its network's endpoint; an SNI Horizon did not route
// gets nothing; a gateway whose bundle does not hold Horizon's root never
// gets configured.
func TestE2EGatewayOverMTLS(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root := certtest.Root(t, td)
	caDir := t.TempDir()
	writeCADir(t, caDir, root)

	// West's pod: a TLS server (the gateway never terminates TLS: the client
	// below sees this server's own certificate).
	backendSVID := certtest.SVID(t, root, "spiffe://cluster.local/ns/demo/sa/echo")
	backendCert := tls.Certificate{PrivateKey: backendSVID.PrivateKey, Leaf: backendSVID.Certificates[0]}
	for _, c := range backendSVID.Certificates {
		backendCert.Certificate = append(backendCert.Certificate, c.Raw)
	}
	backend, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{backendCert}})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	gwAddr := freeLoopbackAddr(t)
	file := westEchoClusterSet(t, backend, gwAddr)
	mtls := freeLoopbackAddr(t)
	bin := buildHorizon(t)
	startHorizon(t, bin, "--clusterset", file, "--ca-dir", caDir, "--mtls-address", mtls, "--gateway-probe-interval", "0",
		"--gateway-identity", "spiffe://cluster.local/ns/horizon-system/sa/horizon-gateway")

	startGateway := func(certDir string) (string, func()) {
		httpAddr := freeLoopbackAddr(t)
		cmd := exec.Command(bin, "gateway", "--xds-address", mtls, "--cert-dir", certDir, "--cluster", "west-1",
			"--listen", gwAddr, "--http-address", httpAddr)
		log := &testkit.Buffer{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stop := func() { cmd.Process.Kill(); cmd.Wait() }
		t.Cleanup(func() {
			stop()
			if t.Failed() {
				t.Logf("horizon gateway:\n%s", log)
			}
		})
		return httpAddr, stop
	}
	ready := func(httpAddr string) bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}

	// A gateway whose bundle is another root cannot verify Horizon.
	foreign := certtest.Root(t, td)
	strangerDir := t.TempDir()
	issueFiles(t, foreign, "spiffe://cluster.local/ns/horizon-system/sa/horizon-gateway", strangerDir)
	httpAddr, stop := startGateway(strangerDir)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if ready(httpAddr) {
			t.Fatal("a gateway with a foreign bundle was configured")
		}
	}
	stop()

	// The gateway's SVID comes from its cluster's intermediate, which binds
	// it to west-1; its identity is a --gateway-identity.
	westCA, err := root.NewIntermediate("west-1")
	if err != nil {
		t.Fatal(err)
	}
	gwDir := t.TempDir()
	issueFiles(t, westCA, "spiffe://cluster.local/ns/horizon-system/sa/horizon-gateway", gwDir)
	httpAddr, _ = startGateway(gwDir)
	testkit.Eventually(t, e2eWait, "the gateway ready", func() bool { return ready(httpAddr) })
	dial := func(sni string) (string, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", gwAddr, &tls.Config{
			ServerName: sni, InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if !cs.PeerCertificates[0].Equal(backendSVID.Certificates[0]) {
					return fmt.Errorf("TLS was terminated by someone else")
				}
				return nil
			},
		})
		if err != nil {
			return "", err
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		return string(b), err
	}
	if got, err := dial("outbound_.7070_._.echo.demo.svc.clusterset.local"); err != nil || got != "west\n" {
		t.Fatalf("through the gateway: %q, %v", got, err)
	}
	if _, err := dial("outbound_.7070_._.made-up.demo.svc.clusterset.local"); err == nil {
		t.Fatal("a made-up SNI was passed through")
	}
}

// westEchoClusterSet answers every connection to backend with "west" and
// writes the ClusterSet file of the gateway tests: echo exported from
// west-1, whose gateway listens at gwAddr, to east-1's proxies.
func westEchoClusterSet(t *testing.T, backend net.Listener, gwAddr string) string {
	t.Helper()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.WriteString(c, "west\n") }()
		}
	}()
	gwHost, gwPort, _ := net.SplitHostPort(gwAddr)
	file := filepath.Join(t.TempDir(), "clusterset.yaml")
	cs := fmt.Sprintf(`networks: [east, west]
clusters:
  - name: east-1
    network: east
    services:
      - {name: echo, namespace: demo, exported: true, ports: [{name: tls, port: 7070}], endpoints: []}
  - name: west-1
    network: west
    gateways: [{address: %s, port: %s}]
    services:
      - name: echo
        namespace: demo
        exported: true
        ports: [{name: tls, port: 7070}]
        endpoints: [{address: 127.0.0.1, serviceAccount: echo, ports: {tls: %d}}]
`, gwHost, gwPort, backend.Addr().(*net.TCPAddr).Port)
	if err := os.WriteFile(file, []byte(cs), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
