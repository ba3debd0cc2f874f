package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/horizonmesh/horizon/internal/testkit/golden"
)

// TestWorkloadsViewAndExplain: `horizon view` and `horizon explain` show
// a workload group's VMs with their source: directly on the VM network,
// through its gateway from another network (testdata/workloads, golden
// files; -update rewrites them).
func TestWorkloadsViewAndExplain(t *testing.T) {
	cs := filepath.Join("testdata", "workloads", "clusterset.yaml")
	var files []string
	for name, args := range map[string][]string{
		"view.vm-west":    {"view", "--clusterset", cs, "--cluster", "vm-west", "--host", "ratings.shop.svc.clusterset.local"},
		"view.east-1":     {"view", "--clusterset", cs, "--cluster", "east-1", "--host", "ratings.shop.svc.clusterset.local"},
		"explain.vm-west": {"explain", "failover", "--clusterset", cs, "--cluster", "vm-west", "--from", "us-west", "--service", "ratings.shop.svc.clusterset.local"},
		"explain.east-1":  {"explain", "failover", "--clusterset", cs, "--from", "us-east/us-east-1a", "--service", "ratings.shop.svc.clusterset.local"},
	} {
		file := filepath.Join("testdata", "workloads", "golden", name+".txt")
		files = append(files, file)
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if err := run(context.Background(), args, &out, &errb); err != nil {
				t.Fatalf("%v\n%s", err, errb.String())
			}
			golden.Check(t, file, out.Bytes())
		})
	}
	golden.Claimed(t, filepath.Join("testdata", "workloads", "golden", "*.txt"), files)
}

// TestViewAndExplainReadWorkloadsFile: view and both explains take
// --workloads as serve does, merged into the ClusterSet (here the embedded
// example): the VM network is a cluster a proxy can be in, and its VM an
// endpoint named by its group. Without the file, that cluster is unknown.
func TestViewAndExplainReadWorkloadsFile(t *testing.T) {
	wl := filepath.Join("testdata", "workloads", "vms-beside.yaml")
	host := "echo.demo.svc.clusterset.local"
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"view", "--workloads", wl, "--cluster", "vm-net", "--host", host}, []string{"10.3.1.5:7070", "workload group demo/echo-vms (declared)"}},
		{[]string{"view", "--workloads", wl, "--cluster", "east-1", "--host", host}, []string{"10.3.0.100:15443"}},
		{[]string{"explain", "failover", "--workloads", wl, "--cluster", "vm-net", "--from", "us-west", "--service", host + ":7070"}, []string{"10.3.1.5"}},
		{[]string{"explain", "route", "--workloads", wl, "--from", "vm-net", "--host", host + ":7070"}, []string{host}},
	} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), tc.args, &out, &errb); err != nil {
			t.Errorf("%q: %v\n%s", tc.args, err, errb.String())
			continue
		}
		for _, w := range tc.want {
			if !bytes.Contains(out.Bytes(), []byte(w)) {
				t.Errorf("%q: no %q in\n%s", tc.args, w, out.String())
			}
		}
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"view", "--cluster", "vm-net"}, &out, &errb); err == nil {
		t.Error("view of cluster vm-net without --workloads: no error")
	}
}
