package kube

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/horizonmesh/horizon/bench/load"
)

// Result is what one scenario measured.
type Result struct {
	Scenario Scenario
	Changes  []Change

	// Per change, wall-clock Unix ns of this host: just before the
	// EndpointSlice update was sent (Written), when the API server answered
	// it (Answered), when the Source first published a ClusterSet holding
	// the marker (Published) and when the server had applied one (Applied,
	// to the millisecond). 0: never seen.
	Written, Answered, Published, Applied []int64

	// Latencies from Written, over the changes where each was seen: the
	// API write itself (Write); the watch, informer and Source merge
	// (Publish); plus the server's debounce, if any, and the render of
	// every view (Apply); the pushes and ACKs, to the last affected
	// proxy's ACK (Converge; only changes every affected proxy ACKed). A
	// view is pushed as soon as it is rendered, so Converge can end
	// before Apply.
	Write, Publish, Apply, Converge Summary

	Unconverged int     // changes some affected proxy never ACKed
	Affected    float64 // proxies affected per change, on average

	ClusterStart time.Duration // the API servers and etcds, in parallel
	Seed         time.Duration // writing the objects
	SourceSync   time.Duration // Source start to the first ClusterSet applied
	FleetSync    time.Duration // the whole fleet connecting at once until the last full sync

	// ChangeCPU is this process's CPU seconds over all changes: the Source
	// (watches, informers, merges), the server.Server and the harness's API
	// writes; not the API servers and etcds (processes of their own) nor,
	// with a fleet in another process, the proxies.
	ChangeCPU  float64
	ChangeWall time.Duration
	// Traffic is what the proxies received during the changes.
	load.Traffic
	Errors []error
}

// Summary is the nearest-rank p50 and p99 and the maximum of N latencies.
type Summary struct {
	N             int
	P50, P99, Max time.Duration
}

func summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Summary{N: len(s), P50: load.Quantile(s, 0.50), P99: load.Quantile(s, 0.99), Max: s[len(s)-1]}
}

// since returns the latencies from Written to at, where at was seen.
func (r *Result) since(at []int64) []time.Duration {
	var out []time.Duration
	for i, t := range at {
		if t != 0 {
			out = append(out, time.Duration(t-r.Written[i]))
		}
	}
	return out
}

// compute fills the figures from the fleet's records before and after the
// changes, as bench/load does: a change converged when every proxy on an
// affected network recorded an ACK of its marker, at the latest of those
// ACKs.
func (r *Result) compute(before, after []load.ProxyStats) {
	marked := make([]load.Marked, len(r.Changes))
	for i, c := range r.Changes {
		marked[i] = load.Marked{Index: c.Index, Affected: c.Affected}
	}
	var lastACK []int64
	r.Traffic, lastACK, r.Affected = load.Tally(before, after, marked)
	var converged []time.Duration
	for i, c := range r.Changes {
		if lastACK[i] == 0 {
			r.Unconverged++
			continue
		}
		converged = append(converged, time.Duration(lastACK[i]-r.Written[c.Index]))
	}
	r.Write = summarize(r.since(r.Answered))
	r.Publish = summarize(r.since(r.Published))
	r.Apply = summarize(r.since(r.Applied))
	r.Converge = summarize(converged)
}

// WriteTable prints the machine, then a markdown table with one row per
// result.
func WriteTable(w io.Writer, machine string, results []*Result) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Machine: %s\n\n", machine)
	cols := []string{
		"K", "mode", "P", "S", "E/cluster", "changes", "converged",
		"write→last ACK p50 / p99 / max", "write→Source published p50 / p99 / max",
		"write→server applied p50 / p99 / max", "API write p50",
		"CPU ms/change", "CPU µs/aff.proxy", "bytes/change", "B/change " + strings.Join(load.TypeNames[:], "/"),
		"bytes unaffected", "NACKs", "fleet sync",
	}
	fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---:|", len(cols)))
	for _, r := range results {
		sc := r.Scenario
		mode := "sotw"
		if sc.Delta {
			mode = "delta"
		}
		n := float64(max(1, len(r.Changes)))
		cpu := r.ChangeCPU / n
		perProxy := "–"
		if r.Affected > 0 {
			perProxy = strconv.FormatFloat(cpu/r.Affected*1e6, 'f', 0, 64)
		}
		byType := make([]string, len(r.BytesByType))
		for t, v := range r.BytesByType {
			byType[t] = strconv.FormatFloat(float64(v)/n, 'f', 0, 64)
		}
		row := []string{
			strconv.Itoa(sc.Clusters), mode, strconv.Itoa(sc.Proxies), strconv.Itoa(sc.Services), strconv.Itoa(sc.Endpoints),
			strconv.Itoa(len(r.Changes)), fmt.Sprintf("%d/%d", r.Converge.N, len(r.Changes)),
			r.Converge.String(), r.Publish.String(), r.Apply.String(), ms(r.Write.P50),
			strconv.FormatFloat(cpu*1000, 'f', 1, 64), perProxy, strconv.FormatFloat(float64(r.Bytes)/n, 'f', 0, 64),
			strings.Join(byType, "/"), fmt.Sprintf("%d (%d proxies)", r.UnaffectedBytes, r.UnaffectedProxies),
			strconv.Itoa(r.NACKs), ms(r.FleetSync),
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// String renders "p50 / p99 / max", or "–" when nothing was seen.
func (s Summary) String() string {
	if s.N == 0 {
		return "–"
	}
	return ms(s.P50) + " / " + ms(s.P99) + " / " + ms(s.Max)
}

func ms(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 1, 64) + " ms" }
