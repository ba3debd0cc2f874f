package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/workloadsvc"
)

// TestWorkloadAPIWithoutJoinKey: a CA directory Horizon cannot write a join
// key into (the chart mounts it from a Secret, read-only) turns the
// workload registration API off with a warning; serve goes on. Found by
// TestMeshOnNodes, whose control plane crash-looped on "read-only file
// system". A directory with a key serves the API.
func TestWorkloadAPIWithoutJoinKey(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	signer := func(string) (*certs.CA, error) { return nil, os.ErrNotExist }
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	w, err := setupWorkloads(workloadsConfig{}, nil, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	// Not writable: its parent does not exist (as root, permission bits do
	// not stop a write; a read-only mount fails the same way).
	unwritable := filepath.Join(t.TempDir(), "missing", "ca")
	if err := w.api(mtlsPort{signer: signer, caDir: unwritable}, td, 0, nil, log); err != nil {
		t.Fatalf("api: %v, want serve to go on without the registration API", err)
	}
	if w.register != nil {
		t.Error("the registration API is on without a join key")
	}
	if !strings.Contains(logs.String(), "workload registration API off") {
		t.Errorf("no warning in the log: %s", logs.String())
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, workloadsvc.JoinKeyFile), bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.api(mtlsPort{signer: signer, caDir: dir}, td, 0, nil, log); err != nil || w.register == nil {
		t.Errorf("with a join key: %v, registration API on: %v", err, w.register != nil)
	}
	if err := os.WriteFile(filepath.Join(dir, workloadsvc.JoinKeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.api(mtlsPort{signer: signer, caDir: dir}, td, 0, nil, log); err == nil {
		t.Error("a join key of 5 bytes is taken")
	}
}
