package kube

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/bench/load"
)

// inProcess runs the fleet in this process over pipes: the same protocol
// horizon-load speaks to its fleet process.
func inProcess(ctx context.Context, cfg load.FleetConfig) (*load.FleetClient, error) {
	cmdR, cmdW := io.Pipe()
	repR, repW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := load.ServeFleet(ctx, cfg, cmdR, repW)
		repW.CloseWithError(io.EOF)
		done <- err
	}()
	return load.NewFleetClient(cmdW, repR, func() error {
		cmdW.Close()
		return <-done
	}), nil
}

// TestSmoke runs a small scenario through two real member clusters, state
// of the world and delta, and checks correctness only: every change
// reached the Source, the server and every affected proxy; proxies on the
// other network received nothing; an endpoint change sent EDS alone.
// Nothing here asserts a time.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two kube-apiservers per mode")
	}
	leaks := goleak.IgnoreCurrent()
	var results []*Result
	for _, delta := range []bool{false, true} {
		sc := Scenario{Clusters: 2, Services: 3, Endpoints: 4, Proxies: 20, Changes: 5, Delta: delta, Conns: 3, Timeout: 20 * time.Second}
		r, err := Run(t.Context(), sc, inProcess, nil)
		if err != nil {
			t.Fatalf("delta=%v: %v", delta, err)
		}
		results = append(results, r)
		t.Logf("delta=%v: clusters started in %v, seeded in %v, source synced in %v", delta, r.ClusterStart, r.Seed, r.SourceSync)
		for _, s := range []struct {
			name string
			got  Summary
		}{{"converged", r.Converge}, {"published by the Source", r.Publish}, {"applied by the server", r.Apply}, {"answered by the API server", r.Write}} {
			if s.got.N != sc.Changes {
				t.Errorf("delta=%v: %d of %d changes %s", delta, s.got.N, sc.Changes, s.name)
			}
		}
		if r.Unconverged != 0 || r.NACKs != 0 {
			t.Errorf("delta=%v: %d unconverged, %d NACKs", delta, r.Unconverged, r.NACKs)
		}
		// Every change is in n0-c0, on net-0: half the proxies.
		if want := float64(sc.Proxies) / 2; r.Affected != want {
			t.Errorf("delta=%v: %v proxies affected per change, want %v", delta, r.Affected, want)
		}
		for _, c := range r.Changes {
			if c.Network != "net-0" || c.Cluster != "n0-c0" {
				t.Errorf("delta=%v: change %d in %s on %s, want n0-c0 on net-0", delta, c.Index, c.Cluster, c.Network)
			}
		}
		if r.UnaffectedProxies != sc.Proxies/2 || r.UnaffectedBytes != 0 {
			t.Errorf("delta=%v: %d unaffected proxies received %d bytes, want %d proxies, 0 bytes", delta, r.UnaffectedProxies, r.UnaffectedBytes, sc.Proxies/2)
		}
		if b := r.BytesByType; b[load.EDS] == 0 || b[load.CDS] != 0 || b[load.LDS] != 0 || b[load.RDS] != 0 {
			t.Errorf("delta=%v: endpoint changes sent %v bytes by type (cds/eds/lds/rds), want EDS alone", delta, b)
		}
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, load.Machine(), results); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + buf.String())
	if out := buf.String(); !strings.HasPrefix(out, "Machine: nproc=") || strings.Count(out, "\n") != 4+len(results) {
		t.Errorf("table:\n%s", out)
	}
	goleak.VerifyNone(t, leaks)
}
