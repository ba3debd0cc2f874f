package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/bootstrap"
)

func TestEnvoyBootstrap(t *testing.T) {
	for _, role := range []string{"sidecar", "gateway"} {
		t.Run(role, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(t.Context(), []string{"bootstrap", "--role", role, "--id", "n1", "--cluster", "east-1", "--network", "east",
				"--namespace", "demo", "--service-account", "echo", "--region", "us-east", "--zone", "us-east-1a",
				"--mtls-address", "horizon.horizon-system.svc:15012"}, &out, &errb)
			if err != nil {
				t.Fatalf("%v: %s", err, errb.String())
			}
			var b bootstrapv3.Bootstrap
			if err := protojson.Unmarshal(out.Bytes(), &b); err != nil {
				t.Fatalf("output is not an Envoy bootstrap: %v", err)
			}
			if err := b.ValidateAll(); err != nil {
				t.Fatal(err)
			}
			md := b.GetNode().GetMetadata().GetFields()
			for k, want := range map[string]string{"CLUSTER_ID": "east-1", "NETWORK": "east", "NAMESPACE": "demo", "SERVICE_ACCOUNT": "echo", "ROLE": role} {
				if got := md[k].GetStringValue(); got != want {
					t.Errorf("metadata %s = %q, want %q", k, got, want)
				}
			}
			if b.GetNode().GetLocality().GetZone() != "us-east-1a" || b.GetNode().GetId() != "n1" {
				t.Errorf("node %v", b.GetNode())
			}
			if !b.GetDynamicResources().GetAdsConfig().GetSetNodeOnFirstMessageOnly() {
				t.Error("ADS config does not send the node once")
			}
			// A DNS name for the xDS server needs a DNS cluster.
			for _, c := range b.GetStaticResources().GetClusters() {
				if c.GetName() == bootstrap.XDSCluster && c.GetType().String() != "STRICT_DNS" {
					t.Errorf("xds cluster type %v for a host name", c.GetType())
				}
			}
		})
	}
}

// envoyBootstrapOf runs `horizon bootstrap` and returns its validated output.
func envoyBootstrapOf(t *testing.T, args ...string) *bootstrapv3.Bootstrap {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(t.Context(), append([]string{"bootstrap", "--id", "n1", "--cluster", "east-1"}, args...), &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(out.Bytes(), &b); err != nil {
		t.Fatalf("output is not an Envoy bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	return &b
}

func TestBootstrapRejects(t *testing.T) {
	for _, args := range [][]string{
		{"bootstrap"},
		{"bootstrap", "--cluster", "c", "--role", "router"},
		{"bootstrap", "--cluster", "c", "--xds-address", "nohost"},
		{"bootstrap", "--cluster", "c", "--svid-provider", "vault"},
		{"bootstrap", "--cluster", "c", "--cert-dir", "certs"},
		{"bootstrap", "--cluster", "c", "--mtls-address", "h:15012", "--xds-server-id", "spiffe://other.org/ns/horizon-system/sa/horizon"},
		// grpc-go cannot check Horizon's SPIFFE ID: a pin it would ignore.
		{"bootstrap", "--role", "proxyless", "--cluster", "east-1", "--mtls-address", "h:15012", "--xds-server-id", "spiffe://cluster.local/ns/horizon-system/sa/horizon"},
		{"bootstrap", "--role", "proxyless", "--cluster", "east-1", "--mtls-address", "h"},
		// grpc-go's receive limit is fixed; Envoy's 0 would be unlimited.
		{"bootstrap", "--role", "proxyless", "--cluster", "east-1", "--xds-max-receive-bytes", "67108864"},
		{"bootstrap", "--role", "sidecar", "--cluster", "east-1", "--xds-max-receive-bytes", "0"},
	} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), args, &out, &errb); err == nil || out.Len() != 0 {
			t.Errorf("%s: err %v, output %q", strings.Join(args, " "), err, out.String())
		}
	}
}

// TestBootstrapLabels: --label becomes node metadata LABELS, which Horizon
// reads back as the proxy's labels.
func TestBootstrapLabels(t *testing.T) {
	b := envoyBootstrapOf(t, "--role", "sidecar", "--namespace", "demo", "--service-account", "echo",
		"--label", "tier=web", "--label", "track=canary")
	p, err := xds.ParseNode(b.GetNode())
	if err != nil {
		t.Fatal(err)
	}
	if p.Labels["tier"] != "web" || p.Labels["track"] != "canary" || len(p.Labels) != 2 {
		t.Fatalf("labels %v", p.Labels)
	}
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"bootstrap", "--cluster", "east-1", "--label", "novalue"}, &out, &errb); err == nil {
		t.Error("--label without = accepted")
	}
}

// TestBootstrapOut: --out writes the same bytes as standard output, to a file.
func TestBootstrapOut(t *testing.T) {
	args := []string{"--role", "proxyless", "--id", "p1", "--cluster", "east-1"}
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	var out, errb bytes.Buffer
	if err := run(t.Context(), append([]string{"bootstrap", "--out", path}, args...), &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || !bytes.Equal(got, runBootstrap(t, args)) {
		t.Errorf("--out wrote %q and printed %q; want the standard output's bytes in the file alone", got, out.String())
	}
}

// bootstrapCases are xds/bootstrap's golden cases as flags: `horizon
// bootstrap` with them prints the golden files byte for byte, so every flag
// keeps its meaning.
var bootstrapCases = []struct {
	name string
	args []string
}{
	{"sidecar", []string{"--role", "sidecar", "--id", "sidecar~10.0.1.7~echo-7d9c5.demo~east-1", "--cluster", "east-1", "--network", "east",
		"--namespace", "demo", "--service-account", "echo", "--region", "us-east", "--zone", "us-east-1a",
		"--mtls-address", "horizon.horizon-system.svc:15012", "--label", "app=echo"}},
	{"sidecar-mtls-spire", []string{"--role", "sidecar", "--id", "sidecar~10.0.1.7~echo-7d9c5.demo~east-1", "--cluster", "east-1",
		"--namespace", "demo", "--service-account", "echo", "--svid-provider", "spire",
		"--mtls-address", "horizon.horizon-system.svc:15012", "--trust-domain", "example.org"}},
	{"gateway", []string{"--role", "gateway", "--id", "gateway~10.0.0.9~eastwest-5f6b.horizon-system~east-1", "--cluster", "east-1",
		"--network", "east", "--namespace", "horizon-system", "--service-account", "horizon-eastwest",
		"--mtls-address", "horizon.horizon-system.svc:15012"}},
	{"gateway-limits", []string{"--role", "gateway", "--id", "gateway~10.0.0.9~eastwest-5f6b.horizon-system~east-1", "--cluster", "east-1",
		"--network", "east", "--namespace", "horizon-system", "--service-account", "horizon-eastwest",
		"--max-downstream-connections", "20000", "--max-heap-bytes", "858993459", "--readiness-port", "8021",
		"--xds-max-receive-bytes", "134217728"}},
	{"proxyless", []string{"--role", "proxyless", "--id", "proxyless~10.0.1.8~client-6c4d.demo~east-1", "--cluster", "east-1",
		"--namespace", "demo", "--service-account", "client", "--region", "us-east", "--zone", "us-east-1a"}},
	{"proxyless-mtls", []string{"--role", "proxyless", "--id", "proxyless~10.0.1.8~client-6c4d.demo~east-1", "--cluster", "east-1",
		"--namespace", "demo", "--service-account", "client", "--region", "us-east", "--zone", "us-east-1a",
		"--mtls-address", "horizon.horizon-system.svc:15012"}},
}

func runBootstrap(t *testing.T, args []string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(t.Context(), append([]string{"bootstrap"}, args...), &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	return out.Bytes()
}

// TestBootstrapCommandGolden: the flags give the bytes of xds/bootstrap's
// golden files (which that package's TestBootstrapGolden renders and
// updates), twice the same.
func TestBootstrapCommandGolden(t *testing.T) {
	for _, c := range bootstrapCases {
		t.Run(c.name, func(t *testing.T) {
			out := runBootstrap(t, c.args)
			path := filepath.Join("..", "..", "xds", "bootstrap", "testdata", c.name+".json")
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output differs from %s; got\n%s", path, out)
			}
			if again := runBootstrap(t, c.args); !bytes.Equal(out, again) {
				t.Error("two runs with the same flags differ")
			}
		})
	}
}

// nodeIDOf runs `horizon bootstrap` without --id and returns the node id.
func nodeIDOf(t *testing.T, args ...string) string {
	t.Helper()
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(runBootstrap(t, args), &b); err != nil {
		t.Fatal(err)
	}
	return b.GetNode().GetId()
}

// TestBootstrapNodeIDUnique: without --id, every proxy gets its own node id,
// Horizon's only handle on one proxy (logs, /debug, horizon view). Two pods
// of one Deployment, the same StatefulSet pod name in two member clusters or
// two namespaces, and two proxies on one VM all differ.
func TestBootstrapNodeIDUnique(t *testing.T) {
	pod := func(name, ip, ns, cluster string) string {
		t.Setenv("POD_NAME", name)
		t.Setenv("POD_IP", ip)
		t.Setenv("POD_NAMESPACE", ns)
		return nodeIDOf(t, "--cluster", cluster, "--role", "sidecar")
	}
	ids := map[string]string{
		"pod a":           pod("echo-7d9c5-a1", "10.0.1.7", "demo", "east-1"),
		"pod b":           pod("echo-7d9c5-b2", "10.0.1.8", "demo", "east-1"),
		"db-0 in east-1":  pod("db-0", "10.0.1.9", "demo", "east-1"),
		"db-0 in west-1":  pod("db-0", "10.0.1.9", "demo", "west-1"),
		"db-0 in staging": pod("db-0", "10.0.1.10", "staging", "east-1"),
	}
	// Outside Kubernetes: no POD_NAME, one host name for every proxy on it.
	t.Setenv("POD_NAME", "")
	t.Setenv("POD_IP", "")
	t.Setenv("POD_NAMESPACE", "")
	t.Setenv("HOSTNAME", "vm")
	ids["vm proxy 1"] = nodeIDOf(t, "--cluster", "east-1", "--namespace", "demo")
	ids["vm proxy 2"] = nodeIDOf(t, "--cluster", "east-1", "--namespace", "demo")

	seen := map[string]string{}
	for who, id := range ids {
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share node id %q", who, other, id)
		}
		seen[id] = who
	}
	if id := ids["pod a"]; id != "sidecar~10.0.1.7~echo-7d9c5-a1.demo~east-1" {
		t.Errorf("pod a: node id %q, want sidecar~10.0.1.7~echo-7d9c5-a1.demo~east-1 (<role>~<pod IP>~<pod>.<namespace>~<cluster>)", id)
	}
	if id := ids["vm proxy 1"]; !strings.HasPrefix(id, "sidecar~~vm-") || !strings.HasSuffix(id, ".demo~east-1") {
		t.Errorf("vm proxy: node id %q, want sidecar~~vm-<random>.demo~east-1", id)
	}
}

// TestGatewayFlagsRejected: the gateway's flags are refused for other roles
// and out of range.
func TestGatewayFlagsRejected(t *testing.T) {
	for _, args := range [][]string{
		{"--role", "sidecar", "--max-downstream-connections", "10"},
		{"--role", "proxyless", "--readiness-port", "15021"},
		{"--role", "sidecar", "--max-heap-bytes", "1000"},
		{"--role", "gateway", "--max-downstream-connections", "-1"},
		{"--role", "gateway", "--readiness-port", "70000"},
		{"--role", "gateway", "--readiness-port", "15000"}, // the admin port
	} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), append([]string{"bootstrap", "--cluster", "c", "--id", "n"}, args...), &out, &errb); err == nil || out.Len() != 0 {
			t.Errorf("%s: err %v, output %d bytes", strings.Join(args, " "), err, out.Len())
		}
	}
}

// TestBootstrapCABundleEnv: the injected bootstrap init container writes the
// trust bundle from its environment for the agent, once.
func TestBootstrapCABundleEnv(t *testing.T) {
	pem, err := os.ReadFile("../../inject/testdata/bundle.pem")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{"bootstrap", "--role", "proxyless", "--id", "p1", "--cluster", "east-1", "--cert-dir", dir, "--ca-bundle-env", "HZ_TEST_BUNDLE", "--out", filepath.Join(dir, "b.json")}
	var out, errb bytes.Buffer
	t.Setenv("HZ_TEST_BUNDLE", "")
	if err := run(t.Context(), args, &out, &errb); err == nil || !strings.Contains(err.Error(), "$HZ_TEST_BUNDLE holds no PEM certificates") {
		t.Fatalf("empty variable: %v", err)
	}
	t.Setenv("HZ_TEST_BUNDLE", string(pem))
	if err := run(t.Context(), args, &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	got, err := os.ReadFile(filepath.Join(dir, "bundle.crt"))
	if err != nil || !bytes.Equal(got, pem) {
		t.Fatalf("bundle.crt = %q, %v; want the variable's PEM", got, err)
	}
	// A bundle there already (the agent's, newer) stays.
	if err := os.WriteFile(filepath.Join(dir, "bundle.crt"), []byte("agent's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), args, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "bundle.crt")); string(got) != "agent's" {
		t.Errorf("bundle.crt replaced: %q", got)
	}
}
