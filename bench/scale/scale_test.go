package scale

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/bench/load"
)

// TestQuickMatrix runs the whole matrix in its quick form with a
// horizon-load built from this tree, as `horizon-scale run -quick` does,
// and checks the tooling, not the figures: every row ran in both
// protocols, the figures are sane (every change converged, nothing reached
// an unaffected proxy, views were counted), the raw output reads back to
// the same figures, and every table has its rows. No time is asserted.
func TestQuickMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("builds horizon-load and runs 26 fleets (about a minute)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build horizon-load with")
	}
	bin := filepath.Join(t.TempDir(), "horizon-load")
	build := exec.Command(goTool, "build", "-o", bin, "github.com/horizonmesh/horizon/bench/cmd/horizon-load")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build horizon-load: %v\n%s", err, out)
	}
	var raw bytes.Buffer
	rows := Rows(true)
	fig, err := Run(context.Background(), Config{
		Binaries: []Binary{{Label: "before", Path: bin}}, Modes: Modes, Rows: rows, Raw: &raw,
	})
	if err != nil {
		t.Fatalf("run: %v\nraw output:\n%s", err, raw.String())
	}
	for _, row := range rows {
		for _, mode := range Modes {
			s, ok := fig.Runs[Key{"before", row.ID, mode}]
			if !ok {
				t.Errorf("%s %s: no figures", row.ID, mode)
				continue
			}
			if s.Converged != s.Changes || s.NACKs != 0 {
				t.Errorf("%s %s: %d of %d changes converged, %d NACKs", row.ID, mode, s.Converged, s.Changes, s.NACKs)
			}
			if s.UnaffectedBytes != 0 || s.CDSOnEndpointChanges > 0 {
				t.Errorf("%s %s: %d bytes to unaffected proxies, %d CDS bytes on endpoint changes", row.ID, mode, s.UnaffectedBytes, s.CDSOnEndpointChanges)
			}
			if s.ViewsSynced < 1 || s.IdleHeap <= s.IdleHeap0 || s.SyncMS <= 0 {
				t.Errorf("%s %s: views %d, idle heap %d → %d, sync %.1f ms", row.ID, mode, s.ViewsSynced, s.IdleHeap0, s.IdleHeap, s.SyncMS)
			}
			if (row.ID == "c" || row.ID == "d") && len(s.Steps) == 0 {
				t.Errorf("%s %s: no rate steps", row.ID, mode)
			}
			if row.ID == "forged" && !s.ForgeSubZone {
				t.Errorf("forged %s: the proxies did not forge sub-zones", mode)
			}
		}
	}

	back, err := ReadFigures(bytes.NewReader(raw.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != len(fig.Runs) || len(back.Load) != len(fig.Load) {
		t.Errorf("read back %d runs, %d load averages; ran %d, %d", len(back.Runs), len(back.Load), len(fig.Runs), len(fig.Load))
	}
	for k, s := range fig.Runs {
		if b := back.Runs[k]; b.P99MS != s.P99MS || b.HeapPerProxy != s.HeapPerProxy || len(b.Steps) != len(s.Steps) {
			t.Errorf("%v: read back %+v, ran %+v", k, b, s)
		}
	}

	var out bytes.Buffer
	WriteTargets(&out, back)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if want := 2 + TargetRows()*len(Modes); len(lines) != want {
		t.Errorf("targets table: %d lines, want %d:\n%s", len(lines), want, out.String())
	}
	for _, l := range lines[2:] {
		if strings.Contains(l, "not measured") || !strings.HasSuffix(l, "| after: to be measured |") {
			t.Errorf("targets line without a before figure, or with an after one: %s", l)
		}
	}
	out.Reset()
	WriteDetails(&out, back)
	for _, want := range []string{"| 2000 | delta |", "Sustained churn, (c)", "Sustained churn, (d)", "Load average"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("details lack %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := WriteExtrapolation(&out, back, DefaultMesh()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n| 100 | 1000 |"); got != len(Modes) {
		t.Errorf("extrapolation: %d tables with a 100-replica row, want %d:\n%s", got, len(Modes), out.String())
	}
	t.Log("\n" + out.String())
}

// TestExtrapolationFromResults recomputes the extrapolation from the
// committed before figures, as RESULTS.md shows it: every unit cost is a
// finite number ≥ 0 and more replicas never need more per replica.
func TestExtrapolationFromResults(t *testing.T) {
	f, err := os.Open("../results/scale-before.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fig, err := ReadFigures(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range Modes {
		k, err := MeasureCosts(fig, "before", mode)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]float64{
			"PerEndpoint": k.PerEndpoint, "PerServiceEntry": k.PerServiceEntry, "ViewPerService": k.ViewPerService,
			"ViewPerEndpoint": k.ViewPerEndpoint, "ProxyPerService": k.ProxyPerService, "ChangeFixed": k.ChangeFixed,
			"PerAffected": k.PerAffected, "PerAffectedService": k.PerAffectedService,
			"BytesPerAffectedEndpoint": k.BytesPerAffectedEndpoint, "SyncCPUPerProxyService": k.SyncCPUPerProxyService,
		} {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("%s: %s = %v", mode, name, v)
			}
		}
		rs := Size(DefaultMesh(), k)
		for i := 1; i < len(rs); i++ {
			if rs[i].Heap > rs[i-1].Heap || rs[i].Cores > rs[i-1].Cores || rs[i].Egress > rs[i-1].Egress {
				t.Errorf("%s: %d replicas need more each than %d: %+v, %+v", mode, rs[i].N, rs[i-1].N, rs[i], rs[i-1])
			}
		}
	}
}

func TestSolveAndFit(t *testing.T) {
	// 2 + 3x + 5y at three points.
	sol, err := solve([][]float64{{1, 1, 0, 5}, {1, 0, 1, 7}, {1, 2, 3, 23}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{2, 3, 5} {
		if math.Abs(sol[i]-want) > 1e-9 {
			t.Errorf("solve: %v, want [2 3 5]", sol)
		}
	}
	if _, err := solve([][]float64{{1, 2, 3}, {2, 4, 6}}); err == nil {
		t.Error("solve of a singular system: no error")
	}
	a, b := fit([]float64{10, 100, 500, 2000}, []float64{21, 201, 1001, 4001})
	if math.Abs(a-1) > 1e-9 || math.Abs(b-2) > 1e-9 {
		t.Errorf("fit: %v + %v x, want 1 + 2x", a, b)
	}
}

func TestHighestWithin(t *testing.T) {
	for _, c := range []struct {
		steps []bool
		want  string
	}{
		{nil, "–"},
		{[]bool{false}, "below 5/s"},
		{[]bool{true, true, false}, "10/s (p99 1 ms); 20/s: p99 1 ms"},
		{[]bool{true, true}, "10/s (p99 1 ms), the highest tried"},
	} {
		var s load.Summary
		for i, ok := range c.steps {
			s.Steps = append(s.Steps, load.StepSummary{Rate: []float64{5, 10, 20, 30}[i], Changes: 1, Converged: 1, P99MS: 1, Within: ok})
		}
		if got := highestWithin(s); !strings.HasPrefix(got, c.want) {
			t.Errorf("steps %v: %q, want %q…", c.steps, got, c.want)
		}
	}
}
