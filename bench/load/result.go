package load

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Result is what one scenario measured.
type Result struct {
	Scenario Scenario
	Changes  []Change
	Applied  []int64 // when each change was handed to server.Server.Update (Unix ns)

	// Convergence of each change: from Update to the ACK of the last
	// affected proxy. Unconverged changes are counted, not included.
	Latencies   []time.Duration
	P50, P99    time.Duration
	Max         time.Duration
	Unconverged int     // changes some affected proxy never ACKed
	Affected    float64 // proxies affected per change, on average

	SyncTime time.Duration // initial sync of the whole fleet
	SyncCPU  float64       // server CPU seconds during it

	ChangeCPU  float64 // server CPU seconds over all changes
	ChangeWall time.Duration
	// Traffic is what the proxies received over all changes.
	Traffic
	Idle0, Idle1 Mem // server before the fleet connected, and synced and idle
	// Idle2 is the server after the changes (before a storm), and Idle1R
	// the same process just before them, after the fleet's first report
	// (whose decoding buffers the harness keeps): Idle2 - Idle1R is what
	// the server keeps of the changes. 0 where not measured (a Rates
	// search, RunFile).
	Idle1R, Idle2 Mem
	FleetHeap     uint64 // fleet process heap in use, for the record
	// ByKind (new-service only) attributes bytes and convergence to each
	// kind of change; the fleet reports after every change.
	ByKind map[string]*KindResult
	// CDSOnEndpointChanges is the CDS bytes all proxies received for
	// endpoint-only changes: must be 0. For hot-service and churn (every
	// change an endpoint change) it is the CDS bytes of the whole run.
	CDSOnEndpointChanges int64
	StormTime            time.Duration
	StormCPU             float64
	StormPeak            Mem
	// Views is horizon_xds_views with the fleet synced and idle, and after
	// the changes (-1: not visible, RunFile).
	ViewsSynced, ViewsEnd int
	// Steps are the steps of a Rates search, in order.
	Steps  []Step
	Errors []error
}

// Step is one rate of a stepping search (Scenario.Rates).
type Step struct {
	Rate          float64
	Changes       int
	Converged     int
	P50, P99, Max time.Duration
	CPU           float64 // server CPU seconds from the step's first change to its last convergence
	Wall          time.Duration
	// Within: every change converged, p99 within Scenario.P99Limit.
	Within bool
}

// Mem is a process's memory.
type Mem struct {
	RSS  uint64 // resident set; peak (VmHWM) for a storm
	Heap uint64 // live Go heap after GC; for a storm, the sampled peak of heap objects (garbage included)
}

// MemPerProxy is the server's growth from no proxy to the synced fleet,
// divided by the proxies: streams, watches, buffers and the views they
// made the server render.
func (r *Result) MemPerProxy() (rss, heap float64) {
	p := float64(r.Scenario.Proxies)
	return (float64(r.Idle1.RSS) - float64(r.Idle0.RSS)) / p, (float64(r.Idle1.Heap) - float64(r.Idle0.Heap)) / p
}

// KindResult is what the changes of one kind cost.
type KindResult struct {
	Changes     int
	BytesByType [numTypes]int64 // all proxies
	// Responses by type, all proxies.
	Responses [numTypes]int64
	P50, Max  time.Duration
	latencies []time.Duration
}

func (r *Result) addKind(kind string, before, after []ProxyStats) {
	if r.ByKind == nil {
		r.ByKind = map[string]*KindResult{}
	}
	k := r.ByKind[kind]
	if k == nil {
		k = &KindResult{}
		r.ByKind[kind] = k
	}
	k.Changes++
	for i, p := range after {
		for t := range numTypes {
			k.BytesByType[t] += p.Bytes[t] - before[i].Bytes[t]
			k.Responses[t] += p.Responses[t] - before[i].Responses[t]
		}
	}
}

// Traffic is what a fleet received between two reports. Bytes are proto
// sizes of the responses, all proxies.
type Traffic struct {
	Bytes, EDSBytes    int64
	BytesByType        [numTypes]int64
	UnaffectedProxies  int   // proxies on networks no change touched
	UnaffectedBytes    int64 // what they received: must be 0
	UnaffectedEDSBytes int64
	NACKs, Reconnects  int
}

// Marked is a change as the fleet sees it: its marker's index, and the
// networks whose proxies must ACK it.
type Marked struct {
	Index    int
	Affected []string
}

// Tally counts what the fleet received between before and after, and, for
// each change, when the last proxy on its affected networks ACKed its
// marker (Unix ns; 0 when one never did). affected is the number of
// affected proxies per change, on average.
func Tally(before, after []ProxyStats, changes []Marked) (t Traffic, lastACK []int64, affected float64) {
	networks := map[string]bool{}
	for _, c := range changes {
		for _, n := range c.Affected {
			networks[n] = true
		}
	}
	byNetwork := map[string][]int{}
	for i, p := range after {
		byNetwork[p.Network] = append(byNetwork[p.Network], i)
		for ty := range numTypes {
			b := p.Bytes[ty] - before[i].Bytes[ty]
			t.Bytes += b
			t.BytesByType[ty] += b
			if ty == EDS {
				t.EDSBytes += b
			}
			if !networks[p.Network] {
				t.UnaffectedBytes += b
				if ty == EDS {
					t.UnaffectedEDSBytes += b
				}
			}
		}
		if !networks[p.Network] {
			t.UnaffectedProxies++
		}
		t.NACKs += p.NACKs - before[i].NACKs
		t.Reconnects += p.Streams - before[i].Streams
	}
	lastACK = make([]int64, len(changes))
	n := 0
	for ci, c := range changes {
		var last int64
		ok := true
		for _, net := range c.Affected {
			n += len(byNetwork[net])
			for _, i := range byNetwork[net] {
				at, seen := after[i].Markers[c.Index]
				ok = ok && seen
				last = max(last, at)
			}
		}
		if ok {
			lastACK[ci] = last
		}
	}
	if len(changes) > 0 {
		affected = float64(n) / float64(len(changes))
	}
	return t, lastACK, affected
}

func (r *Result) compute(before, after []ProxyStats) {
	marked := make([]Marked, len(r.Changes))
	for i, c := range r.Changes {
		marked[i] = Marked{Index: c.Index, Affected: c.Affected}
	}
	var lastACK []int64
	r.Traffic, lastACK, r.Affected = Tally(before, after, marked)
	for i, c := range r.Changes {
		if lastACK[i] == 0 {
			r.Unconverged++
			continue
		}
		l := time.Duration(lastACK[i] - r.Applied[c.Index])
		r.Latencies = append(r.Latencies, l)
		if k := r.ByKind[c.Kind]; k != nil {
			k.latencies = append(k.latencies, l)
		}
	}
	if r.ByKind != nil {
		if k := r.ByKind[KindEndpoint]; k != nil {
			r.CDSOnEndpointChanges = k.BytesByType[CDS]
		}
		for _, k := range r.ByKind {
			if n := len(k.latencies); n > 0 {
				s := slices.Clone(k.latencies)
				slices.Sort(s)
				k.P50, k.Max = quantile(s, 0.50), s[n-1]
			}
		}
	} else if r.Scenario.Name == HotService || r.Scenario.Name == Churn {
		r.CDSOnEndpointChanges = r.BytesByType[CDS]
	}
	if n := len(r.Latencies); n > 0 {
		s := slices.Clone(r.Latencies)
		slices.Sort(s)
		r.P50, r.P99, r.Max = quantile(s, 0.50), quantile(s, 0.99), s[n-1]
	}
}

// quantile is the nearest-rank quantile of sorted s.
func quantile(s []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Machine describes where the figures come from.
func Machine() string {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return fmt.Sprintf("nproc=%d GOMAXPROCS=%d model=%q %s %s/%s loadavg=%s",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), model, runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
}

// WriteTable prints one row per result, preceded by the machine.
func WriteTable(w io.Writer, machine string, results []*Result) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# machine: %s\n", machine)
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmode\tP\tE\tS\tchanges\tconverged\tp50\tp99\tmax\tCPU s/change\tCPU µs/aff.proxy\tbytes/change\tbytes unaffected\tEDS B unaff.\theap/proxy\tRSS/proxy\tsync\tstorm\tstorm peak RSS\tpeak/steady RSS\tstorm peak heap\tB/change cds/eds/lds/rds\tCDS B on ep. changes\tviews\tconns\tsync CPU s (share)\theap kept/change\t")
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
			perProxy = fmt.Sprintf("%.0f", cpu/r.Affected*1e6)
		}
		rss, heap := r.MemPerProxy()
		heapCol := kib(heap)
		if r.Idle1.Heap == 0 {
			heapCol = "–" // another process's (RunFile): its heap is not visible
		}
		storm, peakRSS, ratio, peakHeap := "–", "–", "–", "–"
		if sc.Storm {
			storm, peakRSS, peakHeap = ms(r.StormTime), mib(r.StormPeak.RSS), mib(r.StormPeak.Heap)
			if r.Idle1.RSS > 0 {
				// Steady state: the server's RSS with the fleet connected and idle.
				ratio = fmt.Sprintf("%.2f", float64(r.StormPeak.RSS)/float64(r.Idle1.RSS))
			}
		}
		unaff := fmt.Sprintf("%d (%d proxies)", r.UnaffectedBytes, r.UnaffectedProxies)
		cdsOnEp := "–"
		if r.ByKind[KindEndpoint] != nil || sc.Name == HotService || sc.Name == Churn {
			cdsOnEp = strconv.FormatInt(r.CDSOnEndpointChanges, 10)
		}
		views := "–"
		if r.ViewsSynced >= 0 {
			views = fmt.Sprintf("%d→%d", r.ViewsSynced, r.ViewsEnd)
		}
		syncCPU := fmt.Sprintf("%.2f", r.SyncCPU)
		if r.SyncTime > 0 {
			// The server's CPU over the sync, as a share of all the machine's.
			syncCPU += fmt.Sprintf(" (%.0f%%)", 100*r.SyncCPU/r.SyncTime.Seconds()/float64(runtime.NumCPU()))
		}
		kept := "–"
		if r.Idle2.Heap > 0 && r.Idle1R.Heap > 0 {
			// Live heap after the changes less before them, per change:
			// what the server keeps of each change once it is served.
			kept = kib((float64(r.Idle2.Heap) - float64(r.Idle1R.Heap)) / n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d/%d\t%s\t%s\t%s\t%.4f\t%s\t%.0f\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n",
			sc.Name, mode, sc.Proxies, sc.Endpoints, sc.Services, len(r.Changes),
			len(r.Latencies), len(r.Changes), ms(r.P50), ms(r.P99), ms(r.Max),
			cpu, perProxy, float64(r.Bytes)/n, unaff, r.UnaffectedEDSBytes,
			heapCol, kib(rss), ms(r.SyncTime), storm, peakRSS, ratio, peakHeap, byType(r.BytesByType, n), cdsOnEp,
			views, fleetConns(sc.Proxies, sc.Conns), syncCPU, kept)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// byType renders bytes by type, per change.
func byType(b [numTypes]int64, n float64) string {
	f := make([]string, numTypes)
	for t := range f {
		f[t] = strconv.FormatFloat(float64(b[t])/n, 'f', 0, 64)
	}
	return strings.Join(f, "/")
}

// WriteKinds prints, for the results that attribute bytes to each kind of
// change (new-service), one row per kind: convergence and bytes by type
// per change, all proxies.
func WriteKinds(w io.Writer, results []*Result) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	rows := 0
	for _, r := range results {
		for _, kind := range []string{KindService, KindEndpoint, KindGateway} {
			k := r.ByKind[kind]
			if k == nil {
				continue
			}
			if rows == 0 {
				fmt.Fprintln(tw, "scenario\tmode\tP\tE\tkind\tchanges\tp50\tmax\tB/change cds/eds/lds/rds\tresponses/change cds/eds/lds/rds\t")
			}
			rows++
			mode := "sotw"
			if r.Scenario.Delta {
				mode = "delta"
			}
			n := float64(k.Changes)
			resp := make([]string, numTypes)
			for t := range resp {
				resp[t] = strconv.FormatFloat(float64(k.Responses[t])/n, 'f', 0, 64)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t\n", r.Scenario.Name, mode, r.Scenario.Proxies, r.Scenario.Endpoints,
				kind, k.Changes, ms(k.P50), ms(k.Max), byType(k.BytesByType, n), strings.Join(resp, "/"))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func ms(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 1, 64) + "ms" }
func kib(b float64) string      { return strconv.FormatFloat(b/1024, 'f', 1, 64) + "KiB" }
func mib(b uint64) string       { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + "MiB" }

// cpuSeconds is this process's user + system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// readMem collects garbage twice first (a sync.Pool, such as gRPC's buffer
// pools, survives one collection), so that Heap is live objects.
func readMem() Mem {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Mem{RSS: procStatus("VmRSS"), Heap: ms.HeapAlloc}
}

// procStatus reads a kB field of /proc/self/status, in bytes.
func procStatus(field string) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == field {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

// startPeakWatch resets the kernel's peak RSS (clear_refs 5; where that is
// refused the peak is sampled) and samples the Go heap every 10 ms until
// the returned func is called, which reports both peaks.
func startPeakWatch() func() Mem {
	reset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	stop := make(chan struct{})
	out := make(chan Mem)
	go func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak Mem
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			peak.Heap = max(peak.Heap, sample[0].Value.Uint64())
			if !reset {
				peak.RSS = max(peak.RSS, procStatus("VmRSS"))
			}
			select {
			case <-stop:
				if reset {
					peak.RSS = procStatus("VmHWM")
				}
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() Mem { close(stop); return <-out }
}
