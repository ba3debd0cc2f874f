package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/horizonmesh/horizon/internal/testkit/golden"
)

// bootstrapCase is one `horizon bootstrap` invocation with a golden file
// testdata/bootstrap/<name>.json.
type bootstrapCase struct {
	name string
	args []string
}

// bootstrapCases cover each role and each option that changes the output's
// shape. Every case passes --id, so no case depends on the host.
var bootstrapCases = []bootstrapCase{
	{"sidecar", []string{"--role", "sidecar", "--id", "sidecar~10.0.1.7~echo-7d9c5.demo~east-1", "--cluster", "east-1", "--network", "east",
		"--namespace", "demo", "--service-account", "echo", "--region", "us-east", "--zone", "us-east-1a",
		"--xds-address", "horizon.horizon-system.svc:15010", "--label", "app=echo"}},
	{"sidecar-mtls-spire", []string{"--role", "sidecar", "--id", "sidecar~10.0.1.7~echo-7d9c5.demo~east-1", "--cluster", "east-1",
		"--namespace", "demo", "--service-account", "echo", "--svid-provider", "spire",
		"--mtls-address", "horizon.horizon-system.svc:15012", "--trust-domain", "example.org"}},
	{"gateway", []string{"--role", "gateway", "--id", "gateway~10.0.0.9~eastwest-5f6b.horizon-system~east-1", "--cluster", "east-1",
		"--network", "east", "--namespace", "horizon-system", "--service-account", "horizon-eastwest",
		"--mtls-address", "horizon.horizon-system.svc:15012"}},
	{"gateway-limits", []string{"--role", "gateway", "--id", "gateway~10.0.0.9~eastwest-5f6b.horizon-system~east-1", "--cluster", "east-1",
		"--network", "east", "--namespace", "horizon-system", "--service-account", "horizon-eastwest",
		"--max-downstream-connections", "20000", "--max-heap-bytes", "858993459", "--readiness-port", "8021"}},
	{"proxyless", []string{"--role", "proxyless", "--id", "proxyless~10.0.1.8~client-6c4d.demo~east-1", "--cluster", "east-1",
		"--namespace", "demo", "--service-account", "client", "--region", "us-east", "--zone", "us-east-1a"}},
}

func runBootstrap(t *testing.T, args []string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(t.Context(), append([]string{"bootstrap"}, args...), &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	return out.Bytes()
}

// TestBootstrapOutputIsCanonical: the output is JSON in one canonical form
// (object keys sorted, two-space indentation, one trailing newline), so the
// same input gives the same bytes from one build of horizon to the next.
// protojson's own output is not stable: it varies its whitespace by build on
// purpose (google.golang.org/protobuf/internal/detrand).
func TestBootstrapOutputIsCanonical(t *testing.T) {
	for _, c := range bootstrapCases {
		t.Run(c.name, func(t *testing.T) {
			out := runBootstrap(t, c.args)
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
			if again := runBootstrap(t, c.args); !bytes.Equal(out, again) {
				t.Error("two runs with the same input differ")
			}
		})
	}
}

// TestBootstrapGolden compares each case's output byte for byte with its
// golden file (go test -run TestBootstrapGolden -update rewrites them).
func TestBootstrapGolden(t *testing.T) {
	var files []string
	for _, c := range bootstrapCases {
		file := filepath.Join("testdata", "bootstrap", c.name+".json")
		files = append(files, file)
		t.Run(c.name, func(t *testing.T) {
			golden.Check(t, file, runBootstrap(t, c.args))
		})
	}
	golden.Claimed(t, filepath.Join("testdata", "bootstrap", "*.json"), files)
}
