package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestAgentCheck: --check passes on a directory with a valid SVID only.
func TestAgentCheck(t *testing.T) {
	dir := t.TempDir()
	ca, svid := filepath.Join(dir, "ca"), filepath.Join(dir, "svid")
	for _, args := range [][]string{
		{"ca", "init", "--trust-domain", "cluster.local", "--out", ca},
		{"ca", "issue", "--ca-dir", ca, "--id", "spiffe://cluster.local/ns/demo/sa/echo", "--out", svid},
	} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), args, &out, &errb); err != nil {
			t.Fatalf("%v: %v: %s", args, err, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"agent", "--check", "--cert-dir", svid}, &out, &errb); err != nil {
		t.Fatalf("valid SVID: %v", err)
	}
	if !strings.Contains(out.String(), "valid until") {
		t.Errorf("output %q", out.String())
	}
	err := run(t.Context(), []string{"agent", "--check", "--cert-dir", dir}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "svid.crt") {
		t.Fatalf("no SVID: %v", err)
	}
}
