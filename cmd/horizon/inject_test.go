package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestInjectCommand: `horizon inject` prints what inject.Manifests' golden
// files hold, from a file or standard input, and names file:line on error.
func TestInjectCommand(t *testing.T) {
	const td = "../../inject/testdata/"
	flags := []string{"--injector-config", td + "config.yaml", "--cluster", "west", "--clusterset", td + "clusterset.yaml", "--ca-bundle", td + "bundle.pem"}
	want, err := os.ReadFile(td + "manifests/all-kinds.out.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(t.Context(), append([]string{"inject", "-f", td + "manifests/all-kinds.in.yaml"}, flags...), &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("inject -f printed:\n%s", out.String())
	}

	in, err := os.ReadFile(td + "manifests/bad-annotation.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCommand(&out, &errb)
	root.SetIn(bytes.NewReader(in))
	root.SetArgs(append([]string{"inject", "-f", "-"}, flags...))
	err = root.ExecuteContext(t.Context())
	if err == nil || !strings.HasPrefix(err.Error(), "<stdin>:7: Deployment web: ") {
		t.Errorf("bad annotation on stdin: %v", err)
	}

	out.Reset()
	if err := run(t.Context(), append([]string{"inject", "-f", td + "pods/sidecar.in.yaml", "--mode", "proxyless"}, flags...), &out, &errb); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "sidecar.horizon.io/mode: proxyless") || strings.Contains(s, "horizon-proxy") {
		t.Errorf("--mode proxyless printed:\n%s", s)
	}
	if err := run(t.Context(), append([]string{"inject", "-f", td + "pods/sidecar.in.yaml", "--mode", "ambient"}, flags...), &out, &errb); err == nil {
		t.Error("--mode ambient accepted")
	}

	// --cluster picks the cluster's xdsAddress from the file's clusters.
	out.Reset()
	east := []string{"inject", "-f", td + "pods/sidecar.in.yaml", "--injector-config", td + "config-clusters.yaml", "--cluster", "east", "--clusterset", td + "clusterset.yaml", "--ca-bundle", td + "bundle.pem"}
	if err := run(t.Context(), east, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Count(s, "--mtls-address=horizon.example.com:15012") != 2 || strings.Contains(s, "horizon-system.svc") {
		t.Errorf("--cluster east with an override printed:\n%s", s)
	}
}
