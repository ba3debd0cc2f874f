package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// swappableSource is a workload's SVID, replaced as its agent would on
// renewal, and its bundle.
type swappableSource struct {
	svid   atomic.Pointer[x509svid.SVID]
	bundle *x509bundle.Bundle
}

func (s *swappableSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid.Load(), nil }
func (s *swappableSource) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle, nil
}

// TestE2EIntermediateRotationThroughGateway (issue 20, F9): west-1's
// intermediate is replaced by a new one under the same root while east's
// workload keeps opening mutual-TLS connections, through `horizon gateway`,
// to west's. The new intermediate goes into Horizon's CA directory, west's
// workload and the gateway move to SVIDs under it, and a gateway started
// with such an SVID is configured by Horizon. No call fails at any point.
// (That Horizon's CA signs with a replaced intermediate is TestRootRotation's
// step 2.)
func TestE2EIntermediateRotationThroughGateway(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root := certtest.Root(t, td)
	west1, err := root.NewIntermediate("west-1")
	if err != nil {
		t.Fatal(err)
	}
	east, err := root.NewIntermediate("east-1")
	if err != nil {
		t.Fatal(err)
	}
	caDir := t.TempDir()
	writeCADir(t, caDir, root)
	writeCADir(t, filepath.Join(caDir, "west-1"), west1)
	writeCADir(t, filepath.Join(caDir, "east-1"), east)

	// West's workload: a mutual-TLS server whose SVID is swapped at rotation.
	const echoID = "spiffe://cluster.local/ns/demo/sa/echo"
	westSrc := &swappableSource{bundle: root.Bundle()}
	westSrc.svid.Store(certtest.SVID(t, west1, echoID))
	backend, err := tls.Listen("tcp", "127.0.0.1:0", workloadTLS(westSrc, td, time.Now))
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

	const gatewayID = "spiffe://cluster.local/ns/horizon-system/sa/horizon-gateway"
	startGateway := func(certDir, listen string) string {
		httpAddr := freeLoopbackAddr(t)
		cmd := exec.Command(bin, "gateway", "--xds-address", mtls, "--cert-dir", certDir, "--cluster", "west-1",
			"--listen", listen, "--http-address", httpAddr)
		log := &testkit.Buffer{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("horizon gateway on %s:\n%s", listen, log)
			}
		})
		testkit.Eventually(t, e2eWait, "gateway on "+listen+" ready", func() bool {
			resp, err := http.Get("http://" + httpAddr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		return httpAddr
	}
	gwDir := t.TempDir()
	issueFiles(t, west1, gatewayID, gwDir)
	startGateway(gwDir, gwAddr)

	// East's workload dials west's through the gateway, as its sidecar
	// would: SNI names the service, TLS is end to end and verified by
	// SPIFFE rules on both sides.
	eastSrc := &swappableSource{bundle: root.Bundle()}
	eastSrc.svid.Store(certtest.SVID(t, east, "spiffe://cluster.local/ns/shop/sa/client"))
	clientConf := workloadTLS(eastSrc, td, time.Now)
	clientConf.ServerName = "outbound_.7070_._.echo.demo.svc.clusterset.local"
	var ok, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	call := func() error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", gwAddr, clientConf)
		if err != nil {
			return err
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if string(b) != "west\n" {
			return fmt.Errorf("got %q", b)
		}
		return nil
	}
	testkit.Eventually(t, e2eWait, "a first call through the gateway", func() bool { return call() == nil })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := call(); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	atLeast := func(n int64, what string) {
		t.Helper()
		testkit.Eventually(t, e2eWait, what, func() bool { return ok.Load() >= n })
	}
	atLeast(50, "calls before the rotation")

	// Rotate: a new intermediate for west-1 in Horizon's CA directory, then
	// west's workload and the gateway on SVIDs under it.
	west2, err := root.NewIntermediate("west-1")
	if err != nil {
		t.Fatal(err)
	}
	writeCADir(t, filepath.Join(caDir, "west-1"), west2)
	before := ok.Load()
	westSrc.svid.Store(certtest.SVID(t, west2, echoID))
	issueFiles(t, west2, gatewayID, gwDir)
	atLeast(before+50, "calls after the rotation")

	// A gateway started with an SVID under the new intermediate is
	// configured: Horizon verifies it under the root and binds it to west-1
	// by its intermediate, whichever intermediate signs in the CA directory.
	gw2Dir := t.TempDir()
	issueFiles(t, west2, gatewayID, gw2Dir)
	startGateway(gw2Dir, freeLoopbackAddr(t))
	atLeast(ok.Load()+50, "calls after the second gateway")

	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d calls through the gateway failed during the rotation; first: %v", n, n+ok.Load(), *firstErr.Load())
	}
	// The server's SVID in use chains to the new intermediate.
	if err := westSrc.svid.Load().Certificates[0].CheckSignatureFrom(west2.Certificate()); err != nil {
		t.Fatalf("west's SVID is not under the new intermediate: %v", err)
	}
	if _, err := certs.Verify(westSrc.svid.Load().Certificates, root.Bundle(), time.Now()); err != nil {
		t.Fatalf("west's new chain does not verify under the root: %v", err)
	}
	t.Logf("%d calls through the gateway, none failed, across the intermediate rotation", ok.Load())
}
