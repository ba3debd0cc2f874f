// Package scale runs the scale issue's target matrix (issue 21) with one or
// two horizon-load binaries, before and after a change, interleaved row by
// row, and turns their figures into the markdown tables of bench/RESULTS.md
// ("Scale (issue 21)") and the extrapolation to a large mesh.
//
//	horizon-load run -json  →  Figures  →  Targets/Details (markdown)
//	                                    →  Extrapolate (one replica's needs)
//
// Every figure comes from one row of the matrix (Rows), run as its own
// horizon-load process per protocol and binary, so that memory figures
// are one scenario's. Nothing here asserts a time: the targets are printed
// beside the figures, never checked.
package scale

import (
	"fmt"
	"strconv"
)

// Row is one line of the matrix: the arguments of one `horizon-load run`
// (without -mode, -json), run once per protocol and binary.
type Row struct {
	ID    string
	Title string
	Args  []string
}

// Rows is the target matrix; quick shrinks every row to a smoke check of
// the tooling (seconds, nothing meaningful measured).
//
// Sizes are the issue's; changes are fewer than the 100 where the
// figure is stable with fewer (the S rows' per-change CPU, 10k's p99 is
// the max of 20), to keep the whole matrix, before and after, both
// protocols, near 15 minutes on two cores.
func Rows(quick bool) []Row {
	// q picks the quick value.
	q := func(full, small int) string {
		if quick {
			return strconv.Itoa(small)
		}
		return strconv.Itoa(full)
	}
	step, maxStep, timeout := "3s", "300", "2m"
	cRates, dRates := "5,10,20,30,50,75,100,150", "10,20,30,50,75,100"
	if quick {
		step, maxStep, timeout = "300ms", "20", "30s"
		cRates, dRates = "20,50", "20,50"
	}
	common := []string{"-storm=false", "-timeout", timeout}
	rows := []Row{
		{ID: "hot", Title: "one hot service, 3 clusters × 100 endpoints, 1,000 proxies (make bench's row; heap per proxy with one service)",
			Args: []string{"-scenario", "hot-service", "-networks", "3", "-proxies", q(1000, 30), "-endpoints", "100", "-changes", q(30, 3)}},
		{ID: "c", Title: "(c) churn 2 × 500 services × 20 endpoints × 2,000 proxies: 5/s (50 changes), then the sustained-churn search, p99 ≤ 250 ms",
			Args: []string{"-scenario", "churn", "-networks", "2", "-services", q(500, 10), "-endpoints", "20", "-proxies", q(2000, 40),
				"-changes", q(50, 5), "-rates", cRates, "-step", step, "-max-step-changes", maxStep, "-p99-limit", "250ms"}},
		{ID: "d", Title: "(d) churn 3 × 200 services × 150 endpoints × 2,000 proxies: the sustained-churn search, p99 ≤ 300 ms",
			Args: []string{"-scenario", "churn", "-networks", "3", "-services", q(200, 6), "-endpoints", "150", "-proxies", q(2000, 30),
				"-changes", q(30, 5), "-rates", dRates, "-step", step, "-max-step-changes", maxStep, "-p99-limit", "300ms"}},
	}
	for _, s := range []int{10, 100, 500, 2000} {
		n := s
		if quick {
			n = s / 100
			if n == 0 {
				n = 1
			}
		}
		rows = append(rows, Row{ID: fmt.Sprintf("s%d", s), Title: fmt.Sprintf("hot service with S = %d services in view, 3 clusters × 10 endpoints, 1,000 proxies", s),
			Args: []string{"-scenario", "hot-service", "-networks", "3", "-proxies", q(1000, 30), "-services", strconv.Itoa(n), "-endpoints", "10", "-changes", q(20, 3)}})
	}
	forged := []string{"-scenario", "hot-service", "-networks", "3", "-services", "10", "-endpoints", "100", "-proxies", q(2000, 30), "-changes", q(10, 3)}
	rows = append(rows,
		Row{ID: "honest", Title: "2,000 proxies declaring their cluster's zones (the forged run's control), 3 clusters × 10 services × 100 endpoints", Args: forged},
		Row{ID: "forged", Title: "2,000 proxies each declaring a different unknown sub_zone", Args: append(append([]string{}, forged...), "-forge-subzone")},
		Row{ID: "p10k", Title: "10,000 proxies over 200 gRPC connections (50 streams each), one hot service, 3 clusters × 100 endpoints",
			Args: []string{"-scenario", "hot-service", "-networks", "3", "-proxies", q(10000, 100), "-endpoints", "100", "-changes", q(20, 3)}},
		Row{ID: "storm", Title: "reconnect storm, 1,000 proxies, 50 per connection, 10 services × 100 endpoints",
			Args: []string{"-scenario", "idle", "-services", "10", "-endpoints", "100", "-proxies", q(1000, 30), "-storm", "-timeout", timeout}},
		// The extrapolation's unit costs: a view's heap with (almost) no
		// proxy, in (c)'s and (d)'s shapes: one proxy per view.
		Row{ID: "views-c", Title: "(c)'s ClusterSet with one proxy per view (4): the heap of a view",
			Args: []string{"-scenario", "idle", "-networks", "2", "-services", q(500, 10), "-endpoints", "20", "-proxies", "4"}},
		Row{ID: "views-d", Title: "(d)'s ClusterSet with one proxy per view (6): the heap of a view",
			Args: []string{"-scenario", "idle", "-networks", "3", "-services", q(200, 6), "-endpoints", "150", "-proxies", "6"}},
	)
	for i := range rows {
		if rows[i].ID != "storm" {
			rows[i].Args = append(rows[i].Args, common...)
		}
	}
	return rows
}
