package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
)

// TestWorkloadGroupsNamespaceFlag: --workload-groups-namespace (repeated)
// makes the WorkloadGroup watcher read those namespaces only; without
// --workload-groups-crd, or with a name that is no namespace's, serve
// stops with an error naming the flag.
func TestWorkloadGroupsNamespaceFlag(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "control.kubeconfig")
	if err := kubetest.WriteKubeconfig(kc, &rest.Config{Host: "https://127.0.0.1:1", BearerToken: "unused"}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	cfg := workloadsConfig{crd: true, crdNamespaces: []string{"shop", "default"}}
	w, err := setupWorkloads(cfg, &kubeConfig{kubeconfig: kc}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if w.crd == nil || !slices.Equal(w.crd.Namespaces, []string{"shop", "default"}) {
		t.Errorf("watcher %+v, want namespaces shop and default", w.crd)
	}
	if w, err = setupWorkloads(workloadsConfig{crd: true}, &kubeConfig{kubeconfig: kc}, nil, log); err != nil || w.crd == nil || len(w.crd.Namespaces) != 0 {
		t.Errorf("without the flag: %v, %+v, want a watcher of every namespace", err, w)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workload-groups-namespace", "shop"}, "--workload-groups-namespace needs --workload-groups-crd"},
		{[]string{"--workload-groups-crd", "--kubeconfig", kc, "--workload-groups-namespace", "shop", "--workload-groups-namespace", "Shop_1"}, `--workload-groups-namespace "Shop_1": `},
	} {
		args := append([]string{"serve", "--xds-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0"}, tc.args...)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // a serve that got past its flags stops at once
		err := run(ctx, args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// TestWorkloadGroupsStatusFlag: serve writes WorkloadGroup status unless
// --workload-groups-status=false, and the flag reaches the watcher.
func TestWorkloadGroupsStatusFlag(t *testing.T) {
	if f := newServeCommand().Flags().Lookup("workload-groups-status"); f == nil || f.DefValue != "true" {
		t.Fatalf("--workload-groups-status %+v, want a flag defaulting to true", f)
	}
	kc := filepath.Join(t.TempDir(), "control.kubeconfig")
	if err := kubetest.WriteKubeconfig(kc, &rest.Config{Host: "https://127.0.0.1:1", BearerToken: "unused"}); err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{true, false} {
		w, err := setupWorkloads(workloadsConfig{crd: true, crdStatus: on}, &kubeConfig{kubeconfig: kc}, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if w.crd.WriteStatus != on {
			t.Errorf("--workload-groups-status=%v: watcher WriteStatus %v", on, w.crd.WriteStatus)
		}
	}
}
