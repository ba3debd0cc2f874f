package scale

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/horizonmesh/horizon/bench/load"
)

// Modes are the protocols, in table order.
var Modes = []string{"sotw", "delta"}

// columns are the labels a table has a column for: before and after,
// whichever were measured ("after: to be measured" where not).
var columns = []string{"before", "after"}

// figure is one line of the targets table.
type figure struct {
	name, goal string
	// value renders the figure from one label's runs of one mode; ok is
	// false when a run it needs is missing.
	value func(get getter) (string, bool)
}

type getter func(row string) (load.Summary, bool)

// TargetRows is the number of figures WriteTargets prints per mode (the
// rendering benchmark adds one line when measured).
func TargetRows() int { return len(targets()) }

func targets() []figure {
	kib := func(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
	return []figure{
		{"(c) server CPU per change at 5/s", "≤ 30 ms", func(get getter) (string, bool) {
			s, ok := get("c")
			if !ok || len(s.Steps) == 0 {
				return "", false
			}
			return fmt.Sprintf("%.1f ms", s.Steps[0].CPUPerChange*1000), true
		}},
		{"(c) change → last ACK p50 / p99 at 5/s", "≤ 40 / ≤ 120 ms", func(get getter) (string, bool) {
			s, ok := get("c")
			if !ok || len(s.Steps) == 0 {
				return "", false
			}
			return fmt.Sprintf("%.0f / %.0f ms", s.Steps[0].P50MS, s.Steps[0].P99MS), true
		}},
		{"(c) sustained churn: highest rate with p99 ≤ 250 ms", "≥ 50/s", func(get getter) (string, bool) {
			s, ok := get("c")
			return highestWithin(s), ok
		}},
		{"(d) sustained churn: highest rate with p99 ≤ 300 ms", "≥ 30/s", func(get getter) (string, bool) {
			s, ok := get("d")
			return highestWithin(s), ok
		}},
		{"heap per proxy, 500 services in view ((c), synced, idle)", "≤ 40 KiB", func(get getter) (string, bool) {
			s, ok := get("c")
			return kib(s.HeapPerProxy), ok
		}},
		{"heap per proxy, one service in view (hot, 1,000 proxies)", "≤ 12 KiB", func(get getter) (string, bool) {
			s, ok := get("hot")
			return kib(s.HeapPerProxy), ok
		}},
		{"one-endpoint change, S = 10 → 2,000 services in view: server CPU per change", "S = 2,000 within 2× of S = 10", func(get getter) (string, bool) {
			a, ok1 := get("s10")
			b, ok2 := get("s2000")
			return fmt.Sprintf("%.1f → %.1f ms (×%.1f)", a.CPUPerChange*1000, b.CPUPerChange*1000, ratio(b.CPUPerChange, a.CPUPerChange)), ok1 && ok2
		}},
		{"one-endpoint change, S = 10 → 2,000: p99", "S = 2,000 within 2× of S = 10", func(get getter) (string, bool) {
			a, ok1 := get("s10")
			b, ok2 := get("s2000")
			return fmt.Sprintf("%.0f → %.0f ms (×%.1f)", a.P99MS, b.P99MS, ratio(b.P99MS, a.P99MS)), ok1 && ok2
		}},
		{"heap per proxy at S = 2,000", "≤ 150 KiB", func(get getter) (string, bool) {
			s, ok := get("s2000")
			return kib(s.HeapPerProxy), ok
		}},
		{"2,000 proxies, each its own unknown sub_zone: horizon_xds_views (honest run)", "≤ 3", func(get getter) (string, bool) {
			f, ok1 := get("forged")
			h, ok2 := get("honest")
			return fmt.Sprintf("%d (%d)", f.ViewsSynced, h.ViewsSynced), ok1 && ok2
		}},
		{"forged sub-zones: server RSS, synced (honest run)", "within 10 % of honest", func(get getter) (string, bool) {
			f, ok1 := get("forged")
			h, ok2 := get("honest")
			return fmt.Sprintf("%.0f MiB (%.0f MiB, ×%.2f)", mibf(f.IdleRSS), mibf(h.IdleRSS), ratio(float64(f.IdleRSS), float64(h.IdleRSS))), ok1 && ok2
		}},
		{"(c) initial sync of 2,000 proxies; server CPU in it", "≤ 5 s; report the share", func(get getter) (string, bool) {
			s, ok := get("c")
			share := 0.0
			if s.SyncMS > 0 {
				share = s.SyncCPU / (s.SyncMS / 1000)
			}
			return fmt.Sprintf("%.1f s; %.1f CPU-s = %.2f cores", s.SyncMS/1000, s.SyncCPU, share), ok
		}},
		{"10,000 proxies: idle heap per proxy; gRPC connections", "report", func(get getter) (string, bool) {
			s, ok := get("p10k")
			return fmt.Sprintf("%s; %d connections", kib(s.HeapPerProxy), s.Conns), ok
		}},
		{"10,000 proxies: one hot-service change, p50 / p99", "p99 ≤ 500 ms", func(get getter) (string, bool) {
			s, ok := get("p10k")
			return fmt.Sprintf("%.0f / %.0f ms", s.P50MS, s.P99MS), ok
		}},
		{"hot service, 1,000 proxies × 100 endpoints: p50 / p99 (make bench)", "no regression", func(get getter) (string, bool) {
			s, ok := get("hot")
			return fmt.Sprintf("%.1f / %.1f ms", s.P50MS, s.P99MS), ok
		}},
		{"reconnect storm, 1,000 proxies: time; peak / steady RSS", "no regression", func(get getter) (string, bool) {
			s, ok := get("storm")
			return fmt.Sprintf("%.0f ms; %.2f", s.StormMS, s.PeakSteadyRSS), ok
		}},
		{"bytes to unaffected proxies, every row", "0", func(get getter) (string, bool) {
			return sum(get, func(s load.Summary) int64 { return s.UnaffectedBytes })
		}},
		{"CDS bytes on endpoint changes, every row", "0", func(get getter) (string, bool) {
			return sum(get, func(s load.Summary) int64 { return max(0, s.CDSOnEndpointChanges) })
		}},
		{"NACKs; changes not converged, every row", "0; 0", func(get getter) (string, bool) {
			n, ok := sum(get, func(s load.Summary) int64 { return int64(s.NACKs) })
			u, _ := sum(get, func(s load.Summary) int64 { return int64(s.Changes - s.Converged) })
			return n + "; " + u, ok
		}},
	}
}

// rowIDs are the rows sum looks at: every row of the matrix.
var rowIDs = func() []string {
	var ids []string
	for _, r := range Rows(false) {
		ids = append(ids, r.ID)
	}
	return ids
}()

func sum(get getter, f func(load.Summary) int64) (string, bool) {
	var n int64
	found := 0
	for _, id := range rowIDs {
		if s, ok := get(id); ok {
			n += f(s)
			found++
		}
	}
	return fmt.Sprintf("%d (%d rows)", n, found), found == len(rowIDs)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func mibf(b uint64) float64 { return float64(b) / (1 << 20) }

// highestWithin is the highest rate of a search whose step kept its p99
// within the limit, and the first that did not.
func highestWithin(s load.Summary) string {
	best, over := "", ""
	for _, st := range s.Steps {
		if st.Within {
			best = fmt.Sprintf("%g/s (p99 %.0f ms)", st.Rate, st.P99MS)
			continue
		}
		over = fmt.Sprintf("%g/s: p99 %.0f ms", st.Rate, st.P99MS)
		if st.Converged < st.Changes {
			over = fmt.Sprintf("%g/s: %d of %d converged", st.Rate, st.Converged, st.Changes)
		}
		break
	}
	switch {
	case len(s.Steps) == 0:
		return "–"
	case best == "":
		return fmt.Sprintf("below %g/s (%s)", s.Steps[0].Rate, over)
	case over == "":
		return best + ", the highest tried"
	}
	return best + "; " + over
}

// WriteTargets prints the targets table: one line per figure and mode,
// a column per label.
func WriteTargets(w io.Writer, fig *Figures) {
	fmt.Fprintln(w, "| target | goal | mode | before | after |")
	fmt.Fprintln(w, "|---|---|---|--:|--:|")
	for _, t := range targets() {
		for _, mode := range Modes {
			cells := []string{t.name, t.goal, mode}
			any := false
			for _, label := range columns {
				v, ok := t.value(fig.getter(label, mode))
				if !ok {
					v = label + ": to be measured"
					if label == "before" {
						v = "not measured"
					}
				} else {
					any = true
				}
				cells = append(cells, v)
			}
			if any {
				fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
			}
		}
	}
	before, after := fig.Bench[BenchKey{"before", BenchShapes[0]}], fig.Bench[BenchKey{"after", BenchShapes[0]}]
	if len(before.NsPerOp) > 0 || len(after.NsPerOp) > 0 {
		cell := func(b BenchFigure, label string) string {
			if len(b.NsPerOp) == 0 {
				return label + ": to be measured"
			}
			s := fmt.Sprintf("%.2f ms, %.0f allocs", median(b.NsPerOp)/1e6, median(b.AllocsPerOp))
			if label == "after" && len(before.NsPerOp) > 0 {
				s += fmt.Sprintf(" (×%.2f, ×%.2f)", ratio(median(b.NsPerOp), median(before.NsPerOp)), ratio(median(b.AllocsPerOp), median(before.AllocsPerOp)))
			}
			return s
		}
		fmt.Fprintf(w, "| BenchmarkTranslate sidecar, 100 services × 1 endpoint (median of %d) | ≤ ⅕ the time, ≤ ½ the allocations | – | %s | %s |\n",
			BenchRounds, cell(before, "before"), cell(after, "after"))
	}
}

func (f *Figures) getter(label, mode string) getter {
	return func(row string) (load.Summary, bool) {
		s, ok := f.Runs[Key{label, row, mode}]
		return s, ok
	}
}

// WriteDetails prints the S table, the rate searches and the rendering
// benchmarks, before and after side by side.
func WriteDetails(w io.Writer, fig *Figures) {
	cell := func(label, mode, row string, f func(load.Summary) string) string {
		s, ok := fig.Runs[Key{label, row, mode}]
		if !ok {
			return "–"
		}
		return f(s)
	}
	fmt.Fprintln(w, "\nOne endpoint change, S services in view (`hot-service -networks 3 -proxies 1000 -endpoints 10`), before → after:")
	fmt.Fprintln(w, "\n| S | mode | CPU per change | p50 / p99 | heap per proxy | bytes per change | views |")
	fmt.Fprintln(w, "|--:|---|--:|--:|--:|--:|--:|")
	for _, s := range []int{10, 100, 500, 2000} {
		row := fmt.Sprintf("s%d", s)
		for _, mode := range Modes {
			both := func(f func(load.Summary) string) string {
				return cell("before", mode, row, f) + " → " + cell("after", mode, row, f)
			}
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s |\n", s, mode,
				both(func(s load.Summary) string { return fmt.Sprintf("%.1f ms", s.CPUPerChange*1000) }),
				both(func(s load.Summary) string { return fmt.Sprintf("%.0f / %.0f ms", s.P50MS, s.P99MS) }),
				both(func(s load.Summary) string { return fmt.Sprintf("%.1f KiB", s.HeapPerProxy/1024) }),
				both(func(s load.Summary) string { return fmt.Sprintf("%.0f", s.BytesPerChange) }),
				both(func(s load.Summary) string { return fmt.Sprint(s.ViewsSynced) }))
		}
	}
	for _, row := range []string{"c", "d"} {
		fmt.Fprintf(w, "\nSustained churn, %s: each rate a step on one synced fleet (p50 / p99, server CPU per change; ✗: over the limit, the search stopped):\n", map[string]string{"c": "(c)", "d": "(d)"}[row])
		fmt.Fprintln(w, "\n| rate | mode | before | after |")
		fmt.Fprintln(w, "|--:|---|--:|--:|")
		var rates []float64
		for _, label := range columns {
			for _, mode := range Modes {
				for _, st := range fig.Runs[Key{label, row, mode}].Steps {
					if !slices.Contains(rates, st.Rate) {
						rates = append(rates, st.Rate)
					}
				}
			}
		}
		slices.Sort(rates)
		for _, rate := range rates {
			for _, mode := range Modes {
				cells := []string{}
				for _, label := range columns {
					v := "–"
					for _, st := range fig.Runs[Key{label, row, mode}].Steps {
						if st.Rate == rate {
							mark := ""
							if !st.Within {
								mark = " ✗"
							}
							v = fmt.Sprintf("%.0f / %.0f ms, %.1f ms CPU%s", st.P50MS, st.P99MS, st.CPUPerChange*1000, mark)
						}
					}
					cells = append(cells, v)
				}
				fmt.Fprintf(w, "| %g/s | %s | %s |\n", rate, mode, strings.Join(cells, " | "))
			}
		}
	}
	if len(fig.Bench) > 0 {
		fmt.Fprintf(w, "\n`BenchmarkTranslate/role=sidecar`, %d interleaved rounds, median (min–max):\n\n", BenchRounds)
		fmt.Fprintln(w, "| shape | before ns/op | after ns/op | before allocs/op | after allocs/op |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|")
		for _, shape := range BenchShapes {
			cells := []string{shape}
			for _, f := range []func(BenchFigure) []float64{
				func(b BenchFigure) []float64 { return b.NsPerOp },
				func(b BenchFigure) []float64 { return b.AllocsPerOp },
			} {
				for _, label := range columns {
					vs := f(fig.Bench[BenchKey{label, shape}])
					if len(vs) == 0 {
						cells = append(cells, "–")
						continue
					}
					cells = append(cells, fmt.Sprintf("%.0f (%.0f–%.0f)", median(vs), slices.Min(vs), slices.Max(vs)))
				}
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	if len(fig.Load) > 0 {
		fmt.Fprintf(w, "\nLoad average (1 min) before each run: %.2f–%.2f. Machine: %s\n", slices.Min(fig.Load), slices.Max(fig.Load), fig.Machine)
	}
}
