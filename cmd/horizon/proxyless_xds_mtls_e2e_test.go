package main

// Proxyless gRPC on Horizon's mutual-TLS xDS port: a real grpc-go xDS
// client, configured by `horizon bootstrap --role proxyless --mtls-address`,
// gets its configuration over mutual TLS with an SVID from Horizon's CA.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
	"github.com/horizonmesh/horizon/xds/bootstrap"
)

// envXDSClient makes the test binary, run again by
// TestE2EProxylessXDSOverMTLS, a proxyless client process
// (TestE2EProxylessXDSClientProcess) that expects an answer ("answer") or
// no configuration ("refused").
const envXDSClient = "HORIZON_E2E_XDS_CLIENT"

// Lines the client process prints: the cluster whose backend answered it,
// or the error of its RPC without configuration.
const (
	xdsClientAnswer  = "answered by "
	xdsClientRefused = "refused: "
)

// xdsStreamError is how grpc-go's xDS client (v1.85) words a failed stream
// to its xDS server in the errors of RPCs that have no configuration.
const xdsStreamError = "xds: error received from xDS stream"

// TestE2EProxylessXDSOverMTLS: a grpc-go xDS client in a process of its
// own, as an app runs it (GRPC_XDS_BOOTSTRAP, and the
// GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE=true its bootstrap needs), takes its
// configuration from Horizon's mutual-TLS port, where Horizon is the CA, and
// calls echo in its cluster. Its SVID comes from the intermediate of the
// cluster its node claims, east-1, as Horizon's agent would get it. The
// client gets no configuration from that port with an SVID of a foreign
// root, with a plaintext bootstrap, or without the SPIFFE switch.
func TestE2EProxylessXDSOverMTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the horizon binary; skipped with -short")
	}
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if !t.Failed() {
			// grpc-go's xDS client (v1.85, internal/xds/xdsclient's
			// populateGRPCTransportConfigsFromServerConfig) builds the "tls"
			// channel credentials a second time and drops their close
			// function: their file watcher outlives the client, one per
			// client made. Nothing of Horizon's.
			goleak.VerifyNone(t, leaks, goleak.IgnoreTopFunction("google.golang.org/grpc/credentials/tls/certprovider/pemfile.(*watcher).run"))
		}
	})

	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root := certtest.Root(t, td)
	east1CA, err := root.NewIntermediate("east-1")
	if err != nil {
		t.Fatal(err)
	}
	caDir := t.TempDir()
	writeCADir(t, caDir, root)
	writeCADir(t, filepath.Join(caDir, "east-1"), east1CA)
	const clientID = "spiffe://cluster.local/ns/demo/sa/client"
	certDir := t.TempDir()
	issueFiles(t, east1CA, clientID, certDir)
	if _, err := os.Stat(filepath.Join(certDir, certs.BundleMapFile)); err != nil {
		t.Fatalf("the SVID directory has no trust bundle map: %v", err)
	}
	// The same account's SVID from another root of the trust domain, with
	// the mesh's bundle: only the certificate is wrong.
	foreignDir := t.TempDir()
	issueFilesTrusting(t, certtest.Root(t, td), root.Bundle(), clientID, foreignDir)

	east1 := startE2EBackend(t, "east-1", "127.0.0.2")
	bin := buildHorizon(t)
	tmpl := template.Must(template.ParseFiles(filepath.Join("testdata", "e2e", "clusterset.yaml.tmpl")))
	file := filepath.Join(t.TempDir(), "clusterset.yaml")
	writeE2EClusterSet(t, tmpl, file, e2eClusterSet{East1Port: east1.port, East2Port: 1, West1Port: 1, East1Ready: true})
	mtls := freeLoopbackAddr(t)
	h := startHorizon(t, bin, "--clusterset", file, "--ca-dir", caDir, "--mtls-address", mtls)

	// boot is the bootstrap of node id, a client of east-1 running as
	// demo/client, with its SVID in dir.
	boot := func(t *testing.T, id, dir string, flags ...string) []byte {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"bootstrap", "--role", "proxyless", "--id", id, "--cluster", "east-1",
			"--namespace", "demo", "--service-account", "client", "--region", "r1", "--zone", "z1", "--cert-dir", dir}, flags...)...).Output()
		if err != nil {
			t.Fatalf("horizon bootstrap: %v\n%s", err, stderrOf(err))
		}
		return out
	}

	t.Run("mtls", func(t *testing.T) {
		const id = "proxyless~mtls~client.demo~east-1"
		out := runXDSClient(t, "answer", boot(t, id, certDir, "--mtls-address", mtls))
		if !strings.Contains(out, xdsClientAnswer+"east-1\n") {
			t.Fatalf("the client's RPC was not answered by east-1:\n%s", out)
		}
		if east1.calls.Load() == 0 {
			t.Error("east-1's backend got no RPC")
		}
	})

	// Horizon verifies the client's certificate: one from a foreign root
	// is refused in the handshake.
	t.Run("foreign-svid", func(t *testing.T) {
		const id = "proxyless~foreign~client.demo~east-1"
		out := runXDSClient(t, "refused", boot(t, id, foreignDir, "--mtls-address", mtls))
		if !strings.Contains(out, xdsClientRefused) {
			t.Fatalf("the client did not report its refusal:\n%s", out)
		}
		t.Logf("an SVID of a foreign root: %s", out)
		checkNotStreaming(t, h, id)
	})

	// A plaintext bootstrap on the mutual-TLS port: the client speaks
	// HTTP/2 where a TLS handshake is due, and the port refuses it.
	t.Run("plaintext", func(t *testing.T) {
		const id = "proxyless~plaintext~client.demo~east-1"
		err := awaitNoConfig(t, xdsChannel(t, boot(t, id, certDir, "--xds-address", mtls)), xdsStreamError)
		t.Logf("a plaintext bootstrap on the mutual-TLS port: %v", err)
		checkNotStreaming(t, h, id)
	})

	// The mutual-TLS bootstrap without the SPIFFE switch: grpc-go checks
	// Horizon's certificate for the host name it dialled, which an
	// X509-SVID does not carry, and fails closed.
	t.Run("no-spiffe-switch", func(t *testing.T) {
		if os.Getenv(bootstrap.EnvGRPCSPIFFE) != "" {
			t.Skipf("%s is set in this process", bootstrap.EnvGRPCSPIFFE)
		}
		const id = "proxyless~nospiffe~client.demo~east-1"
		err := awaitNoConfig(t, xdsChannel(t, boot(t, id, certDir, "--mtls-address", mtls)), "x509: cannot validate certificate for 127.0.0.1")
		t.Logf("without the SPIFFE switch: %v", err)
		checkNotStreaming(t, h, id)
	})
}

// runXDSClient runs TestE2EProxylessXDSClientProcess in a new process of
// this test binary, in mode (answer or refused), with boot as its
// GRPC_XDS_BOOTSTRAP and the SPIFFE switch on, and returns its output.
func runXDSClient(t *testing.T, mode string, boot []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(path, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*e2eWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestE2EProxylessXDSClientProcess$", "-test.v")
	cmd.Env = append(os.Environ(), envXDSClient+"="+mode, "GRPC_XDS_BOOTSTRAP="+path, bootstrap.EnvGRPCSPIFFE+"=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the proxyless client process (%s): %v\n%s", mode, err, out)
	}
	return string(out)
}

// xdsChannel is a channel to e2eTarget in this process through grpc-go's
// xDS resolver with bootstrap.
func xdsChannel(t *testing.T, boot []byte) *grpc.ClientConn {
	t.Helper()
	resolver, err := xds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatalf("grpc-go rejects horizon's bootstrap: %v\n%s", err, boot)
	}
	conn, err := grpc.NewClient(e2eTarget, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// awaitNoConfig waits until conn reports that it gets no configuration,
// for the reason want names: the channel in TRANSIENT_FAILURE, never READY,
// and an RPC (not waiting for ready) that fails with an error containing
// want. No RPC may succeed. It returns that RPC's error.
func awaitNoConfig(t *testing.T, conn *grpc.ClientConn, want string) error {
	t.Helper()
	waitTransientFailure(t, conn, "a client without configuration")
	var refused error
	testkit.Eventually(t, e2eWait, "an RPC failing with "+want, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		switch {
		case err == nil:
			t.Fatal("an RPC succeeded without configuration")
		case !strings.Contains(err.Error(), want):
			return err
		}
		refused = err
		return nil
	})
	return refused
}

// checkNotStreaming checks that /debug/syncz lists no stream of node id.
func checkNotStreaming(t *testing.T, h *horizonProcess, id string) {
	t.Helper()
	resp, err := h.http.Get("http://" + h.httpAddr + "/debug/syncz")
	if err != nil {
		t.Fatalf("/debug/syncz: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), id) {
		t.Errorf("/debug/syncz lists %s:\n%s", id, body)
	}
}

// TestE2EProxylessXDSClientProcess is the client process of
// TestE2EProxylessXDSOverMTLS, run with envXDSClient set: grpc-go's xDS
// resolver reads GRPC_XDS_BOOTSTRAP and GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE as
// an app's does, once, when its packages start. In mode answer it sends RPCs
// to e2eTarget until one is answered and prints who answered; in mode
// refused it waits until the channel reports that it gets no configuration,
// and prints the error.
func TestE2EProxylessXDSClientProcess(t *testing.T) {
	mode := os.Getenv(envXDSClient)
	if mode == "" {
		t.Skipf("a client process of TestE2EProxylessXDSOverMTLS, run with %s set", envXDSClient)
	}
	conn, err := grpc.NewClient(e2eTarget, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	switch mode {
	case "answer":
		c := &e2eClient{health: healthpb.NewHealthClient(conn)}
		var cluster string
		testkit.Eventually(t, e2eWait, "an RPC through xDS over mutual TLS", func() error {
			got, err := c.call(5 * time.Second)
			if err != nil {
				return fmt.Errorf("%w (channel %v)", err, conn.GetState())
			}
			cluster = got
			return nil
		})
		fmt.Printf("%s%s\n", xdsClientAnswer, cluster)
	case "refused":
		fmt.Printf("%s%v\n", xdsClientRefused, awaitNoConfig(t, conn, xdsStreamError))
	default:
		t.Fatalf("%s=%q: want answer or refused", envXDSClient, mode)
	}
}
