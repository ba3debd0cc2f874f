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
