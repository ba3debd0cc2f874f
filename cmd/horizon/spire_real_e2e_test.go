package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/xds"
)

// spireWait bounds each wait on the real SPIRE processes: start, attestation,
// the agent's first sync of registration entries (every 5s by default).
const spireWait = 60 * time.Second

// TestSpireRealE2E runs a real SPIRE server and agent (v1.13.3, built by
// `make spire-tools` into bin/spire; HORIZON_SPIRE_BIN names that folder) and
// shows (a) spireServerTLS serves mTLS with Horizon's SVID from the agent's
// Workload API to a client whose SVID also comes from SPIRE, and (b) the
// agent's SDS serves the secret names Horizon's sidecar output references:
// the SVID as xds.SecretDefault and the bundle as xds.SecretRootCA.
func TestSpireRealE2E(t *testing.T) {
	bin := os.Getenv("HORIZON_SPIRE_BIN")
	if bin == "" {
		t.Skip("HORIZON_SPIRE_BIN is not set: the real-SPIRE tier runs with `make test-spire` (it builds bin/spire first)")
	}
	for _, name := range []string{"spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			t.Skipf("HORIZON_SPIRE_BIN=%s lacks %s (make spire-tools builds both): %v", bin, name, err)
		}
	}
	// Unix socket paths are limited to 108 bytes: a short directory of our own.
	work, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	td := spiffeid.RequireTrustDomainFromString("example.org")
	horizonID := spiffeid.RequireFromString("spiffe://example.org/ns/default/sa/horizon")
	serverSock := filepath.Join(work, "server.sock")
	agentSock := filepath.Join(work, "agent.sock")

	port := freeLoopbackAddr(t)[len("127.0.0.1:"):]
	writeSpireFile(t, filepath.Join(work, "server.conf"), fmt.Sprintf(spireServerConf, port, serverSock, work, work))
	startSpire(t, filepath.Join(bin, "spire-server"), "run", "-config", filepath.Join(work, "server.conf"))
	spireServer := func(args ...string) string {
		t.Helper()
		return spireCLI(t, filepath.Join(bin, "spire-server"), append(args, "-socketPath", serverSock)...)
	}
	testkit.Eventually(t, spireWait, "spire-server healthcheck", func() error {
		_, err := exec.Command(filepath.Join(bin, "spire-server"), "healthcheck", "-socketPath", serverSock).CombinedOutput()
		return err
	})

	// "Token: <uuid>", then a warning that the token names no SPIFFE ID.
	token := ""
	for _, line := range strings.Split(spireServer("token", "generate", "-ttl", "600"), "\n") {
		if rest, ok := strings.CutPrefix(line, "Token:"); ok {
			token = strings.TrimSpace(rest)
		}
	}
	if token == "" {
		t.Fatal("spire-server token generate printed no token")
	}
	// The entry exists before the agent starts, so its first sync has it.
	spireServer("entry", "create", "-parentID", "spiffe://example.org/spire/agent/join_token/"+token,
		"-spiffeID", horizonID.String(), "-selector", "unix:uid:"+strconv.Itoa(os.Getuid()))
	writeSpireFile(t, filepath.Join(work, "bundle.pem"), spireServer("bundle", "show"))
	writeSpireFile(t, filepath.Join(work, "agent.conf"), fmt.Sprintf(spireAgentConf, work, port, agentSock, work, token))
	startSpire(t, filepath.Join(bin, "spire-agent"), "run", "-config", filepath.Join(work, "agent.conf"))

	ctx, cancel := context.WithTimeout(context.Background(), 3*spireWait)
	defer cancel()
	log := slog.New(slog.NewTextHandler(spireTestLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	start := time.Now()
	cfg, src, err := spireServerTLS(ctx, agentSock, td, spireWait, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	t.Logf("first X509-SVID from the agent after %v", time.Since(start).Round(time.Millisecond))
	if len(src.Authorities()) == 0 {
		t.Fatal("no authorities in the bundle")
	}

	t.Run("mTLS", func(t *testing.T) {
		client, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+agentSock)))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		addr := startSpireWhoami(t, cfg)
		id, served, err := spireWhoami(addr, client, client, horizonID)
		if err != nil {
			t.Fatalf("handshake with SVIDs from SPIRE: %v", err)
		}
		if id != horizonID.String() {
			t.Fatalf("the server saw %q, want %s", id, horizonID)
		}
		if got, err := x509svid.IDFromCert(served); err != nil || got != horizonID {
			t.Fatalf("the server presented %v (%v), want %s", got, err, horizonID)
		}
	})

	t.Run("SDS", func(t *testing.T) {
		secrets := fetchSDS(ctx, t, agentSock, xds.SecretDefault, xds.SecretRootCA)
		cert := secrets[xds.SecretDefault].GetTlsCertificate()
		if cert == nil {
			t.Fatalf("%q: no tls_certificate: %v", xds.SecretDefault, secrets[xds.SecretDefault])
		}
		chain := spirePEMCerts(t, cert.GetCertificateChain().GetInlineBytes())
		if len(chain) == 0 || len(cert.GetPrivateKey().GetInlineBytes()) == 0 {
			t.Fatalf("%q: no certificate chain or no private key", xds.SecretDefault)
		}
		if got, err := x509svid.IDFromCert(chain[0]); err != nil || got != horizonID {
			t.Fatalf("%q is %v (%v), want %s", xds.SecretDefault, got, err, horizonID)
		}
		vc := secrets[xds.SecretRootCA].GetValidationContext()
		if vc == nil {
			t.Fatalf("%q: no validation_context: %v", xds.SecretRootCA, secrets[xds.SecretRootCA])
		}
		// SPIRE sends Envoy of 1.18 on (and one that does not say) the
		// SPIFFE certificate validator with the bundle per trust domain;
		// trusted_ca only when told disable_spiffe_cert_validation.
		var pemRoots []byte
		if cv := vc.GetCustomValidatorConfig(); cv != nil {
			spiffeCV := &tlsv3.SPIFFECertValidatorConfig{}
			if err := cv.GetTypedConfig().UnmarshalTo(spiffeCV); err != nil {
				t.Fatalf("%q: custom validator %s: %v", xds.SecretRootCA, cv.GetName(), err)
			}
			for _, d := range spiffeCV.GetTrustDomains() {
				if d.GetName() == td.Name() {
					pemRoots = d.GetTrustBundle().GetInlineBytes()
				}
			}
		} else {
			pemRoots = vc.GetTrustedCa().GetInlineBytes()
		}
		roots := spirePEMCerts(t, pemRoots)
		want := src.Authorities()
		if len(roots) != len(want) || !roots[0].Equal(want[0]) {
			t.Fatalf("%q holds %d roots, not the Workload API's bundle (%d)", xds.SecretRootCA, len(roots), len(want))
		}
	})
}

// fetchSDS asks the agent's SDS for names, as Envoy does, and returns the
// secrets by name once all have arrived.
func fetchSDS(ctx context.Context, t *testing.T, socket string, names ...string) map[string]*tlsv3.Secret {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, spireWait)
	defer cancel()
	stream, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&discoverypb.DiscoveryRequest{
		Node:          &core.Node{Id: "sidecar~127.0.0.1~echo.default~default.svc.cluster.local", Cluster: "echo"},
		ResourceNames: names,
		TypeUrl:       resourcev3.SecretType,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*tlsv3.Secret{}
	for len(got) < len(names) {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("SDS: %v (have %d of %q)", err, len(got), names)
		}
		for _, r := range resp.GetResources() {
			s := &tlsv3.Secret{}
			if err := r.UnmarshalTo(s); err != nil {
				t.Fatalf("SDS resource %s: %v", r.GetTypeUrl(), err)
			}
			got[s.GetName()] = s
		}
	}
	return got
}

func spirePEMCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// startSpire starts a SPIRE process; the test's end stops it (SIGTERM, then
// SIGKILL) and logs its output if the test failed.
func startSpire(t *testing.T, bin string, args ...string) {
	t.Helper()
	out := &testkit.Buffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s %s:\n%s", filepath.Base(bin), strings.Join(args, " "), out)
		}
	})
}

// spireCLI runs a SPIRE command to completion and returns its standard output.
func spireCLI(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func writeSpireFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// spireTestLog sends log lines to the test log.
type spireTestLog struct{ t *testing.T }

func (w spireTestLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// spireServerConf: port, API socket, data directory, data directory.
const spireServerConf = `server {
    bind_address = "127.0.0.1"
    bind_port = "%s"
    socket_path = "%s"
    trust_domain = "example.org"
    data_dir = "%s/server-data"
    log_level = "DEBUG"
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "%s/datastore.sqlite3"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
}
`

// spireAgentConf: data directory, server port, Workload API socket, the
// directory of bundle.pem, join token.
const spireAgentConf = `agent {
    data_dir = "%s/agent-data"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "%s"
    socket_path = "%s"
    trust_bundle_path = "%s/bundle.pem"
    trust_domain = "example.org"
    join_token = "%s"
    sds {
        default_svid_name = "default"
        default_bundle_name = "ROOTCA"
    }
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
`
