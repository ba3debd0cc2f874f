package load

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Summary is one result's figures in a form other programs read
// (horizon-load run -json; bench/scale). Durations are milliseconds, CPU
// seconds, memory and traffic bytes.
type Summary struct {
	Scenario     string `json:"scenario"`
	Mode         string `json:"mode"` // sotw or delta
	Proxies      int    `json:"proxies"`
	Endpoints    int    `json:"endpoints"` // per service, over the ClusterSet
	Services     int    `json:"services"`
	Networks     int    `json:"networks"`
	Clusters     int    `json:"clusters"`
	Conns        int    `json:"conns"` // gRPC connections the fleet's streams shared
	ForgeSubZone bool   `json:"forge_sub_zone,omitempty"`

	Changes   int     `json:"changes"`
	Converged int     `json:"converged"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
	// CPUPerChange is the server's CPU seconds from the first change to
	// the last convergence, / changes (for a search, over every step).
	CPUPerChange float64 `json:"cpu_per_change_s"`
	// Affected is the proxies a change affects, on average.
	Affected       float64 `json:"affected"`
	BytesPerChange float64 `json:"bytes_per_change"`
	// UnaffectedBytes is what proxies no change affects received (must be 0).
	UnaffectedBytes   int64 `json:"unaffected_bytes"`
	UnaffectedProxies int   `json:"unaffected_proxies"`
	// CDSOnEndpointChanges: -1 where the scenario has no endpoint change.
	CDSOnEndpointChanges int64 `json:"cds_bytes_on_endpoint_changes"`
	NACKs                int   `json:"nacks"`

	// Memory: the server with no proxy (the ClusterSet, its changes made
	// so far, the server), and synced and idle; per proxy is the growth /
	// proxies (MemPerProxy). Heap is live heap after two GCs; 0 where not
	// visible (RunFile).
	IdleHeap0    uint64  `json:"idle_heap0"`
	IdleHeap     uint64  `json:"idle_heap"`
	IdleRSS0     uint64  `json:"idle_rss0"`
	IdleRSS      uint64  `json:"idle_rss"`
	HeapPerProxy float64 `json:"heap_per_proxy"`
	RSSPerProxy  float64 `json:"rss_per_proxy"`
	ViewsSynced  int     `json:"views_synced"` // horizon_xds_views; -1: not visible
	ViewsEnd     int     `json:"views_end"`

	SyncMS  float64 `json:"sync_ms"`
	SyncCPU float64 `json:"sync_cpu_s"` // server CPU during the initial sync

	StormMS       float64       `json:"storm_ms,omitempty"`
	StormPeakRSS  uint64        `json:"storm_peak_rss,omitempty"`
	PeakSteadyRSS float64       `json:"peak_steady_rss,omitempty"`
	Steps         []StepSummary `json:"steps,omitempty"`
	Errors        []string      `json:"errors,omitempty"`
}

// StepSummary is one step of a rate search.
type StepSummary struct {
	Rate         float64 `json:"rate"`
	Changes      int     `json:"changes"`
	Converged    int     `json:"converged"`
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	MaxMS        float64 `json:"max_ms"`
	CPUPerChange float64 `json:"cpu_per_change_s"`
	Within       bool    `json:"within"`
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Summarize returns r's figures.
func (r *Result) Summarize() Summary {
	sc := r.Scenario
	s := Summary{
		Scenario: sc.Name, Mode: "sotw", Proxies: sc.Proxies, Endpoints: sc.Endpoints, Services: sc.Services,
		Networks: sc.Networks, Clusters: sc.Networks * sc.ClustersPerNetwork, Conns: fleetConns(sc.Proxies, sc.Conns),
		ForgeSubZone: sc.ForgeSubZone,
		Changes:      len(r.Changes), Converged: len(r.Latencies),
		P50MS: msf(r.P50), P99MS: msf(r.P99), MaxMS: msf(r.Max),
		Affected: r.Affected, UnaffectedBytes: r.UnaffectedBytes, UnaffectedProxies: r.UnaffectedProxies,
		CDSOnEndpointChanges: -1, NACKs: r.NACKs,
		IdleHeap0: r.Idle0.Heap, IdleHeap: r.Idle1.Heap, IdleRSS0: r.Idle0.RSS, IdleRSS: r.Idle1.RSS,
		ViewsSynced: r.ViewsSynced, ViewsEnd: r.ViewsEnd,
		SyncMS: msf(r.SyncTime), SyncCPU: r.SyncCPU,
	}
	if sc.Delta {
		s.Mode = "delta"
	}
	if n := len(r.Changes); n > 0 {
		s.CPUPerChange = r.ChangeCPU / float64(n)
		s.BytesPerChange = float64(r.Bytes) / float64(n)
	}
	if r.ByKind[KindEndpoint] != nil || sc.Name == HotService || sc.Name == Churn {
		s.CDSOnEndpointChanges = r.CDSOnEndpointChanges
	}
	s.RSSPerProxy, s.HeapPerProxy = r.MemPerProxy()
	if sc.Storm {
		s.StormMS, s.StormPeakRSS = msf(r.StormTime), r.StormPeak.RSS
		if r.Idle1.RSS > 0 {
			s.PeakSteadyRSS = float64(r.StormPeak.RSS) / float64(r.Idle1.RSS)
		}
	}
	for _, st := range r.Steps {
		ss := StepSummary{Rate: st.Rate, Changes: st.Changes, Converged: st.Converged,
			P50MS: msf(st.P50), P99MS: msf(st.P99), MaxMS: msf(st.Max), Within: st.Within}
		if st.Changes > 0 {
			ss.CPUPerChange = st.CPU / float64(st.Changes)
		}
		s.Steps = append(s.Steps, ss)
	}
	for _, err := range r.Errors {
		s.Errors = append(s.Errors, err.Error())
	}
	return s
}

// fleetConns is the gRPC connections a fleet of proxies opens (see
// FleetConfig.Conns).
func fleetConns(proxies, conns int) int {
	if conns <= 0 {
		conns = (proxies + 49) / 50
	}
	return min(conns, proxies)
}

// WriteJSON writes one Summary per line.
func WriteJSON(w io.Writer, results []*Result) error {
	enc := json.NewEncoder(w)
	for _, r := range results {
		if err := enc.Encode(r.Summarize()); err != nil {
			return err
		}
	}
	return nil
}

// WriteSteps prints the steps of every rate search: one row per rate.
func WriteSteps(w io.Writer, results []*Result) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	rows := 0
	for _, r := range results {
		s := r.Summarize()
		for _, st := range s.Steps {
			if rows == 0 {
				fmt.Fprintf(tw, "scenario\tmode\tP\tE\tS\trate/s\tchanges\tconverged\tp50\tp99\tmax\tCPU s/change\tp99 ≤ %s\t\n", r.Scenario.P99Limit)
			}
			rows++
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%g\t%d\t%d\t%.1fms\t%.1fms\t%.1fms\t%.4f\t%v\t\n", s.Scenario, s.Mode, s.Proxies, s.Endpoints, s.Services,
				st.Rate, st.Changes, st.Converged, st.P50MS, st.P99MS, st.MaxMS, st.CPUPerChange, st.Within)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}
