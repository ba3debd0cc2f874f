package bootstrap

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/internal/testkit/golden"
	"github.com/horizonmesh/horizon/xds"
)

// goldenCase is one bootstrap with a golden file testdata/<name>.json.
// cmd/horizon's TestBootstrapCommandGolden gives `horizon bootstrap` the
// flags that say the same and expects the same bytes.
type goldenCase struct {
	name string
	cfg  Config
}

// goldenCases cover each role and each option that changes the output's
// shape. Every case has its node id, so no case depends on the host.
func goldenCases() []goldenCase {
	horizon := func(td string) spiffeid.ID {
		return spiffeid.RequireFromString("spiffe://" + td + "/ns/horizon-system/sa/horizon")
	}
	agent := SVIDSource{Provider: xds.SVIDFromAgent, CertDir: DefaultCertDir, SDSSocket: DefaultSDSSocket}
	gw := GatewayLimits{MaxConnections: DefaultMaxDownstreamConnections, ReadinessPort: DefaultReadinessPort}
	local := Server{Host: "127.0.0.1", Port: 15010, ID: horizon("cluster.local")}
	// In a cluster every proxy dials Horizon's mutual-TLS port: the
	// plaintext one is for local development, on loopback.
	inCluster := Server{Host: "horizon.horizon-system.svc", Port: 15012, MTLS: true, ID: horizon("cluster.local")}
	return []goldenCase{
		{"sidecar", Config{
			Proxy: Proxy{ID: "sidecar~10.0.1.7~echo-7d9c5.demo~east-1", Role: "sidecar", Cluster: "east-1", Network: "east",
				Namespace: "demo", ServiceAccount: "echo", Region: "us-east", Zone: "us-east-1a", Labels: map[string]string{"app": "echo"}},
			Server: inCluster, SVIDs: agent, AdminPort: 15000, Gateway: gw,
		}},
		{"sidecar-mtls-spire", Config{
			Proxy:     Proxy{ID: "sidecar~10.0.1.7~echo-7d9c5.demo~east-1", Role: "sidecar", Cluster: "east-1", Namespace: "demo", ServiceAccount: "echo"},
			Server:    Server{Host: "horizon.horizon-system.svc", Port: 15012, MTLS: true, ID: horizon("example.org")},
			SVIDs:     SVIDSource{Provider: xds.SVIDFromSPIRE, CertDir: DefaultCertDir, SDSSocket: DefaultSDSSocket},
			AdminPort: 15000, Gateway: gw,
		}},
		{"gateway", Config{
			Proxy: Proxy{ID: "gateway~10.0.0.9~eastwest-5f6b.horizon-system~east-1", Role: "gateway", Cluster: "east-1",
				Network: "east", Namespace: "horizon-system", ServiceAccount: "horizon-eastwest"},
			Server: inCluster, SVIDs: agent, AdminPort: 15000, Gateway: gw,
		}},
		{"gateway-limits", Config{
			Proxy: Proxy{ID: "gateway~10.0.0.9~eastwest-5f6b.horizon-system~east-1", Role: "gateway", Cluster: "east-1",
				Network: "east", Namespace: "horizon-system", ServiceAccount: "horizon-eastwest"},
			Server: Server{Host: local.Host, Port: local.Port, ID: local.ID, MaxReceiveBytes: 128 << 20}, SVIDs: agent, AdminPort: 15000,
			Gateway: GatewayLimits{MaxConnections: 20000, MaxHeapBytes: 858993459, ReadinessPort: 8021},
		}},
		{"proxyless", Config{
			Proxy: Proxy{ID: "proxyless~10.0.1.8~client-6c4d.demo~east-1", Role: "proxyless", Cluster: "east-1",
				Namespace: "demo", ServiceAccount: "client", Region: "us-east", Zone: "us-east-1a"},
			Server: local, SVIDs: agent, AdminPort: 15000, Gateway: gw,
		}},
		{"proxyless-mtls", Config{
			Proxy: Proxy{ID: "proxyless~10.0.1.8~client-6c4d.demo~east-1", Role: "proxyless", Cluster: "east-1",
				Namespace: "demo", ServiceAccount: "client", Region: "us-east", Zone: "us-east-1a"},
			Server: inCluster, SVIDs: agent, AdminPort: 15000, Gateway: gw,
		}},
	}
}

func render(t *testing.T, cfg Config) []byte {
	t.Helper()
	out, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBootstrapOutputIsCanonical: the output is JSON in one canonical form
// (object keys sorted, two-space indentation, one trailing newline), so the
// same input gives the same bytes from one build of horizon to the next.
// protojson's own output is not stable: it varies its whitespace by build on
// purpose (google.golang.org/protobuf/internal/detrand).
func TestBootstrapOutputIsCanonical(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			out := render(t, c.cfg)
			var v any
			dec := json.NewDecoder(bytes.NewReader(out))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(v); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, want.Bytes()) {
				t.Errorf("output is not in canonical form; got\n%s\nwant\n%s", out, want.Bytes())
			}
			if again := render(t, c.cfg); !bytes.Equal(out, again) {
				t.Error("two runs with the same input differ")
			}
		})
	}
}

// TestBootstrapGolden compares each case's output byte for byte with its
// golden file (go test -run TestBootstrapGolden -update rewrites them); a
// golden file no case claims fails too.
func TestBootstrapGolden(t *testing.T) {
	var files []string
	for _, c := range goldenCases() {
		file := filepath.Join("testdata", c.name+".json")
		files = append(files, file)
		t.Run(c.name, func(t *testing.T) {
			golden.Check(t, file, render(t, c.cfg))
		})
	}
	golden.Claimed(t, filepath.Join("testdata", "*.json"), files)
}
