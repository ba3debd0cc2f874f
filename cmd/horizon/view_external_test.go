package main

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/internal/testkit/golden"
)

// resolveFailure is the reason of a failed lookup in a note.
var resolveFailure = regexp.MustCompile(`failed \([^)]*\)`)

// TestViewExternal locks what `horizon view` says of external services,
// per role: where their endpoints come from and who resolves them, what a
// sidecar gets (TLS origination, health checks) and a proxyless client
// does not, and the note of a network that cannot reach one
// (testdata/external/*.txt, rewritten with -update). The proxyless view
// resolves pay.example.invalid, which no resolver answers (.invalid is
// reserved), so its failure shows too.
func TestViewExternal(t *testing.T) {
	file := filepath.Join("testdata", "external", "clusterset.yaml")
	for _, tc := range []struct{ name, role, cluster string }{
		{"sidecar-east-1", "sidecar", "east-1"},
		{"proxyless-east-1", "proxyless", "east-1"},
		{"sidecar-west-1", "sidecar", "west-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if err := view([]string{"--clusterset", file, "--role", tc.role, "--cluster", tc.cluster}, &out, &errb); err != nil {
				t.Fatalf("%v\n%s", err, errb.String())
			}
			// How the lookup fails depends on the host's resolver.
			got := resolveFailure.ReplaceAll(out.Bytes(), []byte("failed (...)"))
			golden.Check(t, filepath.Join("testdata", "external", tc.name+".txt"), got)
		})
	}
}

// TestViewAndExplainByAlias: `horizon view --host` and `horizon explain
// failover --service` take an alias (the embedded example's
// greeter.demo.global) for the host it stands for.
func TestViewAndExplainByAlias(t *testing.T) {
	var out, errb bytes.Buffer
	if err := view([]string{"--cluster", "east-1", "--host", "greeter.demo.global"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "greeter.demo.svc.clusterset.local:50051\n  priority 0") {
		t.Errorf("view by alias:\n%s", out.String())
	}
	out.Reset()
	if err := explain([]string{"failover", "--service", "greeter.demo.global", "--from", "us-east/us-east-1a"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "alias: greeter.demo.global stands for greeter.demo.svc.clusterset.local") {
		t.Errorf("explain by alias:\n%s", out.String())
	}
}
