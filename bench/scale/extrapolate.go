package scale

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/horizonmesh/horizon/bench/load"
)

// Mesh is the mesh the extrapolation sizes replicas for. Every service is
// defined in every cluster with EndpointsPerServiceCluster endpoints, so
// Services = Endpoints / (Clusters × EndpointsPerServiceCluster); every
// proxy has ServicesInView of them in view (a Sidecar resource's scope);
// each cluster is its own network with Zones zones.
type Mesh struct {
	Clusters                   int
	Endpoints                  int
	Proxies                    int
	ServicesInView             int
	EndpointsPerServiceCluster int
	Zones                      int
	// ChurnPer1k is endpoint changes per second per 1,000 endpoints
	// (scenario (c), "Istio's published churn setting": 5/s over 10,000).
	ChurnPer1k float64
	// A replica's budget.
	Cores     float64
	MemBytes  float64
	EgressBps float64 // bytes per second
	Replicas  []int
	HeapToRSS float64 // RSS per byte of live heap (GOGC=100: about 2)
}

// DefaultMesh is the mesh: 100 clusters, 1 M endpoints, 100 k
// proxies, on replicas the size of this machine (2 cores), 8 GiB, 1 Gbit/s.
func DefaultMesh() Mesh {
	return Mesh{
		Clusters: 100, Endpoints: 1_000_000, Proxies: 100_000, ServicesInView: 500, EndpointsPerServiceCluster: 10, Zones: 3,
		ChurnPer1k: 0.5, Cores: 2, MemBytes: 8 << 30, EgressBps: 125e6, Replicas: []int{1, 2, 5, 10, 20, 50, 100}, HeapToRSS: 2,
	}
}

// Costs are the unit costs measured by one label's runs of one protocol.
type Costs struct {
	// Heap of the served ClusterSet with no proxy: Base + PerServiceEntry
	// × (services × clusters defining them) + PerEndpoint × endpoints
	// (rows storm, views-c, views-d: idle, no change made).
	Base, PerServiceEntry, PerEndpoint float64
	// Heap of one view: ViewPerService × services in view + ViewPerEndpoint
	// × the proxy's cluster's endpoints in view (rows views-c, views-d
	// against c, d).
	ViewPerService, ViewPerEndpoint float64
	// Heap per connected proxy: ProxyBase + ProxyPerService × services in
	// view (least squares over rows s10 … s2000).
	ProxyBase, ProxyPerService float64
	// Server CPU per endpoint change: ChangeFixed + affected proxies ×
	// (PerAffected + PerAffectedService × (services in view − 1)) (rows hot
	// and p10k: one service; s10 … s2000 for the services).
	ChangeFixed, PerAffected, PerAffectedService float64
	// Bytes an affected proxy receives per change, per endpoint the changed
	// service has in its cluster (row c).
	BytesPerAffectedEndpoint float64
	// Server CPU seconds to sync one proxy, per service in its view (row c).
	SyncCPUPerProxyService float64
	// Notes list what was clamped or estimated.
	Notes []string
}

// MeasureCosts derives the unit costs from one label's runs of one mode.
func MeasureCosts(fig *Figures, label, mode string) (Costs, error) {
	get := fig.getter(label, mode)
	need := func(ids ...string) ([]load.Summary, error) {
		var out []load.Summary
		var missing []string
		for _, id := range ids {
			s, ok := get(id)
			if !ok {
				missing = append(missing, id)
			}
			out = append(out, s)
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s %s: no run of row %s", label, mode, strings.Join(missing, ", "))
		}
		return out, nil
	}
	rs, err := need("storm", "views-c", "views-d", "c", "d", "hot", "p10k", "s10", "s100", "s500", "s2000")
	if err != nil {
		return Costs{}, err
	}
	storm, vc, vd, c, d, hot, p10k := rs[0], rs[1], rs[2], rs[3], rs[4], rs[5], rs[6]
	srows := rs[7:]
	var k Costs
	clamp := func(name string, v *float64) {
		if *v < 0 || math.IsNaN(*v) {
			k.Notes = append(k.Notes, fmt.Sprintf("%s came out %.3g (noise): taken as 0", name, *v))
			*v = 0
		}
	}

	// The ClusterSet: three idle rows, no change made.
	entries := func(s load.Summary) float64 { return float64(s.Services * s.Clusters) }
	total := func(s load.Summary) float64 { return float64(s.Services * s.Endpoints) }
	sol, err := solve([][]float64{
		{1, entries(storm), total(storm), float64(storm.IdleHeap0)},
		{1, entries(vc), total(vc), float64(vc.IdleHeap0)},
		{1, entries(vd), total(vd), float64(vd.IdleHeap0)},
	})
	if err != nil {
		return Costs{}, fmt.Errorf("ClusterSet heap: %w", err)
	}
	k.Base, k.PerServiceEntry, k.PerEndpoint = sol[0], sol[1], sol[2]
	clamp("heap per service entry", &k.PerServiceEntry)
	clamp("heap per endpoint", &k.PerEndpoint)

	// A view: the same ClusterSet with one proxy per view, and with 2,000.
	grow := func(s load.Summary) float64 { return float64(s.IdleHeap) - float64(s.IdleHeap0) }
	view := func(few, full load.Summary) (perView, local float64) {
		p := (grow(full) - grow(few)) / float64(full.Proxies-few.Proxies)
		v := (grow(few) - float64(few.Proxies)*p) / float64(max(1, few.ViewsSynced))
		return v, float64(few.Services*few.Endpoints) / float64(few.Clusters)
	}
	viewC, localC := view(vc, c)
	viewD, localD := view(vd, d)
	sol, err = solve([][]float64{
		{float64(vc.Services), localC, viewC},
		{float64(vd.Services), localD, viewD},
	})
	if err != nil {
		return Costs{}, fmt.Errorf("view heap: %w", err)
	}
	k.ViewPerService, k.ViewPerEndpoint = sol[0], sol[1]
	if k.ViewPerService < 0 || k.ViewPerEndpoint < 0 {
		// Two noisy points: charge the whole view per service instead.
		k.Notes = append(k.Notes, fmt.Sprintf("view heap per service / per endpoint came out %.0f / %.0f B: taken as %.0f B per service, 0 per endpoint", k.ViewPerService, k.ViewPerEndpoint, max(viewC/float64(vc.Services), viewD/float64(vd.Services))))
		k.ViewPerService, k.ViewPerEndpoint = max(viewC/float64(vc.Services), viewD/float64(vd.Services)), 0
	}

	// A proxy, by services in view.
	var xs, ys, cpuPer []float64
	for _, s := range srows {
		xs = append(xs, float64(s.Services))
		ys = append(ys, s.HeapPerProxy)
		cpuPer = append(cpuPer, s.CPUPerChange/max(1, s.Affected))
	}
	k.ProxyBase, k.ProxyPerService = fit(xs, ys)
	clamp("heap per proxy per service", &k.ProxyPerService)

	// A change.
	k.PerAffected = (p10k.CPUPerChange - hot.CPUPerChange) / (p10k.Affected - hot.Affected)
	clamp("CPU per affected proxy", &k.PerAffected)
	k.ChangeFixed = hot.CPUPerChange - hot.Affected*k.PerAffected
	clamp("CPU per change, fixed", &k.ChangeFixed)
	_, k.PerAffectedService = fit(xs, cpuPer)
	clamp("CPU per affected proxy per service", &k.PerAffectedService)
	k.BytesPerAffectedEndpoint = c.BytesPerChange / max(1, c.Affected) / (float64(c.Endpoints) / float64(c.Clusters))
	k.SyncCPUPerProxyService = c.SyncCPU / float64(c.Proxies*c.Services)
	return k, nil
}

// Replica is what one of N replicas needs.
type Replica struct {
	N       int
	Proxies float64
	Views   float64
	Heap    float64 // bytes, live
	RSS     float64 // bytes, Heap × HeapToRSS
	Cores   float64 // CPU for the churn
	Egress  float64 // bytes per second
	Resync  float64 // seconds for its proxies to sync again at once, on its cores
	First   string  // the resource nearest (or past) its budget
	Fits    bool
}

// Size computes each replica count's needs.
func Size(m Mesh, k Costs) []Replica {
	services := float64(m.Endpoints) / float64(m.Clusters*m.EndpointsPerServiceCluster)
	inView := math.Min(float64(m.ServicesInView), services)
	rate := m.ChurnPer1k * float64(m.Endpoints) / 1000
	// An endpoint change reaches the proxies of its cluster (network) that
	// have the service in view; other networks see a gateway weight that a
	// replaced endpoint does not change.
	affected := float64(m.Proxies) / float64(m.Clusters) * inView / services
	views := float64(m.Clusters * m.Zones)
	clusterSet := k.Base + k.PerServiceEntry*services*float64(m.Clusters) + k.PerEndpoint*float64(m.Endpoints)
	view := k.ViewPerService*inView + k.ViewPerEndpoint*inView*float64(m.EndpointsPerServiceCluster)
	perProxy := k.ProxyBase + k.ProxyPerService*inView
	var out []Replica
	for _, n := range m.Replicas {
		r := Replica{N: n, Proxies: float64(m.Proxies) / float64(n)}
		r.Views = math.Min(views, r.Proxies)
		r.Heap = clusterSet + r.Views*view + r.Proxies*perProxy
		r.RSS = r.Heap * m.HeapToRSS
		// Every replica renders every change for the views it holds; it
		// fans out to its share of the affected proxies.
		r.Cores = rate * (k.ChangeFixed + affected/float64(n)*(k.PerAffected+k.PerAffectedService*(inView-1)))
		r.Egress = rate * affected / float64(n) * k.BytesPerAffectedEndpoint * float64(m.EndpointsPerServiceCluster)
		r.Resync = r.Proxies * k.SyncCPUPerProxyService * inView / m.Cores
		use := map[string]float64{"memory": r.RSS / m.MemBytes, "CPU": r.Cores / m.Cores, "egress": r.Egress / m.EgressBps}
		worst := 0.0
		for _, name := range []string{"memory", "CPU", "egress"} {
			if use[name] > worst {
				worst, r.First = use[name], name
			}
		}
		r.Fits = worst <= 1
		out = append(out, r)
	}
	return out
}

// WriteExtrapolation prints the unit costs and the replica table for every
// label and mode measured.
func WriteExtrapolation(w io.Writer, fig *Figures, m Mesh) error {
	services := m.Endpoints / (m.Clusters * m.EndpointsPerServiceCluster)
	fmt.Fprintf(w, "Mesh: %d clusters (a network each, %d zones), %d endpoints = %d services × %d endpoints in each cluster, %d proxies with %d services in view, %g endpoint changes/s per 1,000 endpoints (%g/s). Replica budget: %g cores, %.0f GiB, %.0f MB/s egress; RSS = %g × live heap.\n",
		m.Clusters, m.Zones, m.Endpoints, services, m.EndpointsPerServiceCluster, m.Proxies, m.ServicesInView, m.ChurnPer1k, m.ChurnPer1k*float64(m.Endpoints)/1000,
		m.Cores, m.MemBytes/(1<<30), m.EgressBps/1e6, m.HeapToRSS)
	var errs []error
	for _, label := range fig.Labels() {
		for _, mode := range Modes {
			k, err := MeasureCosts(fig, label, mode)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Fprintf(w, "\n**%s, %s.** Unit costs: ClusterSet %.0f B per endpoint + %.0f B per (service, cluster) + %.1f MiB; a view %.0f B per service + %.0f B per local endpoint in view; a proxy %.1f KiB + %.2f KiB per service in view; a change %.2f ms + %.1f µs per affected proxy + %.3f µs per (affected proxy × service in view); %.0f B per affected proxy per local endpoint of the changed service; sync %.1f µs of CPU per (proxy × service in view).\n",
				label, mode, k.PerEndpoint, k.PerServiceEntry, k.Base/(1<<20), k.ViewPerService, k.ViewPerEndpoint, k.ProxyBase/1024, k.ProxyPerService/1024,
				k.ChangeFixed*1000, k.PerAffected*1e6, k.PerAffectedService*1e6, k.BytesPerAffectedEndpoint, k.SyncCPUPerProxyService*1e6)
			for _, n := range k.Notes {
				fmt.Fprintf(w, "- %s\n", n)
			}
			fmt.Fprintln(w, "\n| replicas | proxies each | views each | live heap | RSS | CPU cores for the churn | egress | all its proxies resync | runs out first |")
			fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|--:|---|")
			for _, r := range Size(m, k) {
				first := r.First + " (fits)"
				if !r.Fits {
					first = "**" + r.First + "**"
				}
				fmt.Fprintf(w, "| %d | %.0f | %.0f | %.2f GiB | %.2f GiB | %.2f | %.1f MB/s | %.1f s | %s |\n",
					r.N, r.Proxies, r.Views, r.Heap/(1<<30), r.RSS/(1<<30), r.Cores, r.Egress/1e6, r.Resync, first)
			}
		}
	}
	return errors.Join(errs...)
}

// solve solves the linear system whose rows are coefficients then the
// constant (Gaussian elimination with partial pivoting).
func solve(rows [][]float64) ([]float64, error) {
	n := len(rows)
	a := make([][]float64, n)
	for i := range rows {
		a[i] = append([]float64(nil), rows[i]...)
	}
	for col := range n {
		p := col
		for r := col + 1; r < n; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[p][col]) {
				p = r
			}
		}
		if math.Abs(a[p][col]) < 1e-12 {
			return nil, errors.New("the rows do not determine the costs (singular)")
		}
		a[col], a[p] = a[p], a[col]
		for r := range n {
			if r == col {
				continue
			}
			f := a[r][col] / a[col][col]
			for c := col; c <= n; c++ {
				a[r][c] -= f * a[col][c]
			}
		}
	}
	out := make([]float64, n)
	for i := range n {
		out[i] = a[i][n] / a[i][i]
	}
	return out, nil
}

// fit is the least-squares line y = a + b·x.
func fit(xs, ys []float64) (a, b float64) {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return sy / max(1, n), 0
	}
	b = (n*sxy - sx*sy) / d
	return (sy - b*sx) / n, b
}
