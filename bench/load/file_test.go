package load

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestFileSmoke drives the real `horizon serve`, built from this tree, by
// rewriting its ClusterSet file, with both protocols; correctness only:
// every change reached every affected proxy through the file watch, the
// control group got nothing, and no endpoint change sent CDS.
func TestFileSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs horizon serve; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "horizon")
	build := exec.Command("go", "build", "-o", bin, "github.com/horizonmesh/horizon/cmd/horizon")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, sc := range []Scenario{
		{Name: HotService, Proxies: 24, Endpoints: 8, Changes: 4, Timeout: 30 * time.Second},
		{Name: Gateway, Proxies: 24, Endpoints: 8, Changes: 3, Delta: true, Timeout: 30 * time.Second},
	} {
		t.Run(sc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := RunFile(ctx, sc, inProcess(t), bin, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Latencies) != sc.Changes {
				t.Fatalf("%d of %d changes converged", len(res.Latencies), sc.Changes)
			}
			if res.UnaffectedProxies == 0 || res.UnaffectedBytes != 0 {
				t.Fatalf("%d bytes to %d unaffected proxies, want 0 to some", res.UnaffectedBytes, res.UnaffectedProxies)
			}
			if res.CDSOnEndpointChanges != 0 {
				t.Fatalf("%d CDS bytes on endpoint changes", res.CDSOnEndpointChanges)
			}
			// /proc/PID/stat counts CPU in clock ticks (10 ms): four small
			// changes can take less than one, so the reading is checked over
			// the initial sync and the changes together.
			if res.SyncCPU+res.ChangeCPU <= 0 {
				t.Fatalf("no CPU measured for the horizon process (sync %v, changes %v)", res.SyncCPU, res.ChangeCPU)
			}
		})
	}
}
