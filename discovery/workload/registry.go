// Package workload is the pipeline stage of workloads outside Kubernetes:
// a Registry keeps the instances that agents registered (joined) into the
// ClusterSet's workload groups, with the health they report, and merges
// them into every ClusterSet the sources publish before the rest of the
// pipeline sees it.
//
//	sources ──► Registry.In(base) ──► Out (pipeline: observers, policy,
//	workloads file ──► SetFile            gateway health, views)
//	agents (certs/workloadsvc) ──► Join / Report ──┘ (republish on change)
//
// Timing: an agent reports every ReportInterval, and at once when its
// probe's verdict changes. An instance is ready while its last report was
// healthy and no older than StaleAfter (3 report intervals); once its last
// report is older than its group's grace period it is removed. Sweep runs
// every SweepInterval (1s), so an instance goes not-ready at most
// StaleAfter+1s after its agent's last report, and away at most grace+1s
// after it.
//
// Limits: instances per group (Limits.PerGroup) and in all (Limits.Total),
// joins and reports per second (token buckets): what is refused is counted
// by reason (horizon_workload_refusals_total) and changes nothing else.
package workload

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/horizonmesh/horizon/discovery"
)

// Reasons a join or report is refused: the reason label of
// horizon_workload_refusals_total.
const (
	ReasonUnknownGroup  = "unknown_group"  // no such workload group
	ReasonBadAddress    = "bad_address"    // not an IP address
	ReasonAddressTaken  = "address_taken"  // another endpoint of the service, or another group's instance, has it
	ReasonGroupFull     = "group_full"     // Limits.PerGroup instances already
	ReasonRegistryFull  = "registry_full"  // Limits.Total instances already
	ReasonRateLimited   = "rate_limited"   // joins or reports beyond their rate
	ReasonNotRegistered = "not_registered" // a report for an instance not (or no longer) registered
	ReasonTooManyLabels = "too_many_labels"
)

// Refusal is a refused join or report, with its reason.
type Refusal struct {
	Reason string
	Err    error
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Err.Error() }

// RefusalReason returns the reason, for callers that do not import this
// package.
func (r *Refusal) RefusalReason() string { return r.Reason }

func refuse(reason, format string, a ...any) error {
	return &Refusal{Reason: reason, Err: fmt.Errorf(format, a...)}
}

// Limits bound what agents can make the registry hold and do.
type Limits struct {
	PerGroup         int     // instances of one group (default 200)
	Total            int     // instances in all (default 5000)
	JoinsPerSecond   float64 // default 20, burst JoinBurst (default 50)
	JoinBurst        int
	ReportsPerSecond float64 // default 500, burst ReportBurst (default 1000)
	ReportBurst      int
	MaxLabels        int // of one instance (default 32)
}

func (l Limits) withDefaults() Limits {
	l.PerGroup = cmp.Or(l.PerGroup, 200)
	l.Total = cmp.Or(l.Total, 5000)
	l.JoinsPerSecond = cmp.Or(l.JoinsPerSecond, 20)
	l.JoinBurst = cmp.Or(l.JoinBurst, 50)
	l.ReportsPerSecond = cmp.Or(l.ReportsPerSecond, 500)
	l.ReportBurst = cmp.Or(l.ReportBurst, 1000)
	l.MaxLabels = cmp.Or(l.MaxLabels, 32)
	return l
}

// Defaults of Options.
const (
	DefaultReportInterval = 5 * time.Second
	SweepInterval         = time.Second
)

// Options configure a Registry.
type Options struct {
	// Out takes every merged ClusterSet (the pipeline's next stage). It is
	// called with the registry's lock released, from In, SetFile, Join,
	// Report or Run's goroutine, one call at a time.
	Out    func(*discovery.ClusterSet)
	Limits Limits
	// ReportInterval is how often agents are asked to report.
	ReportInterval time.Duration
	Metrics        *Metrics
	Log            *slog.Logger
	Now            func() time.Time
}

// Registry holds registered instances and merges them into ClusterSets.
// Create it with New.
type Registry struct {
	opts  Options
	joins *rate.Limiter
	reps  *rate.Limiter

	outMu sync.Mutex // one Out call at a time, in order of builds

	mu        sync.Mutex
	base      *discovery.ClusterSet     // the sources' latest
	file      *discovery.ClusterSet     // the workloads file's, nil without one
	crd       []discovery.WorkloadGroup // from WorkloadGroup objects
	merged    *discovery.ClusterSet     // the last published
	instances map[instanceKey]*instance
	lastErr   error
}

type instanceKey struct {
	group   discovery.ServiceKey
	address string
}

type instance struct {
	labels  map[string]string
	healthy bool
	last    time.Time // of the last join or report
	ready   bool      // as last published
}

// New makes a Registry.
func New(opts Options) *Registry {
	opts.Limits = opts.Limits.withDefaults()
	opts.ReportInterval = cmp.Or(opts.ReportInterval, DefaultReportInterval)
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Out == nil {
		opts.Out = func(*discovery.ClusterSet) {}
	}
	return &Registry{
		opts:      opts,
		joins:     rate.NewLimiter(rate.Limit(opts.Limits.JoinsPerSecond), opts.Limits.JoinBurst),
		reps:      rate.NewLimiter(rate.Limit(opts.Limits.ReportsPerSecond), opts.Limits.ReportBurst),
		instances: map[instanceKey]*instance{},
	}
}

// SetOut sets where merged ClusterSets go (Options.Out); call it before
// the first In.
func (r *Registry) SetOut(out func(*discovery.ClusterSet)) {
	r.outMu.Lock()
	r.opts.Out = out
	r.outMu.Unlock()
}

// StaleAfter is how long after its last report an instance stays ready.
func (r *Registry) StaleAfter() time.Duration { return 3 * r.opts.ReportInterval }

// ReportInterval is how often agents are asked to report.
func (r *Registry) ReportInterval() time.Duration { return r.opts.ReportInterval }

// In takes a ClusterSet from the sources and publishes it with the
// workloads merged in.
func (r *Registry) In(cs *discovery.ClusterSet) {
	if cs == nil {
		return
	}
	r.mu.Lock()
	r.base = cs
	r.mu.Unlock()
	r.publish()
}

// Merge merges the workloads into cs at once and returns the result, for
// the first ClusterSet a server is seeded with; later ones go through In.
func (r *Registry) Merge(cs *discovery.ClusterSet) (*discovery.ClusterSet, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.base = cs
	merged, err := r.build()
	if merged == nil {
		return nil, err
	}
	r.merged = merged
	return merged, nil
}

// SetFile takes a new version of the workloads file (file.ParseWorkloads):
// its VM-network clusters and its groups.
func (r *Registry) SetFile(cs *discovery.ClusterSet) {
	r.mu.Lock()
	r.file = cs
	r.mu.Unlock()
	r.publish()
}

// SetCRDGroups takes the groups of the WorkloadGroup objects (CRDWatcher).
func (r *Registry) SetCRDGroups(groups []discovery.WorkloadGroup) {
	r.mu.Lock()
	r.crd = groups
	r.mu.Unlock()
	r.publish()
}

// LastError is why the last merge left something out, nil if it did not.
func (r *Registry) LastError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// publish builds and hands on the merged ClusterSet.
func (r *Registry) publish() {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	r.mu.Lock()
	if r.base == nil {
		r.mu.Unlock()
		return
	}
	merged, _ := r.build()
	if merged != nil {
		r.merged = merged
	}
	r.mu.Unlock()
	if merged != nil {
		r.opts.Out(merged)
	}
}

// build merges base, the file and the instances; r.mu is held. A nil
// result keeps the last good one (the error says why).
func (r *Registry) build() (*discovery.ClusterSet, error) {
	now := r.opts.Now()
	var extraClusters []discovery.Cluster
	var extraGroups []discovery.WorkloadGroup
	if r.file != nil {
		extraClusters, extraGroups = r.file.Clusters, r.file.WorkloadGroups
	}
	extraGroups = slices.Concat(extraGroups, r.crd)
	live := make([]discovery.WorkloadInstance, 0, len(r.instances))
	for _, k := range slices.SortedFunc(maps.Keys(r.instances), compareKeys) {
		in := r.instances[k]
		in.ready = in.healthy && now.Sub(in.last) <= r.StaleAfter()
		live = append(live, discovery.WorkloadInstance{Group: k.group, Address: k.address, Labels: in.labels, Ready: in.ready})
	}
	if len(r.base.WorkloadGroups) == 0 && len(extraGroups) == 0 && len(extraClusters) == 0 && len(live) == 0 {
		// Nothing to merge: the ClusterSet as the sources made it.
		r.lastErr = nil
		r.opts.Metrics.set(r.base, nil)
		return r.base, nil
	}
	merged, err := r.base.WithWorkloads(extraClusters, extraGroups, live)
	if err != nil && !errors.Is(err, r.lastErr) && (r.lastErr == nil || err.Error() != r.lastErr.Error()) {
		r.opts.Log.Warn("workloads left out of the ClusterSet", "error", err)
	}
	r.lastErr = err
	if merged == nil {
		r.opts.Metrics.mergeFailed()
		return nil, err
	}
	r.opts.Metrics.set(merged, r.groupCounts(merged))
	return merged, err
}

func compareKeys(a, b instanceKey) int {
	return cmp.Or(a.group.Compare(b.group), cmp.Compare(a.address, b.address))
}

// groupCounts counts the registered instances of each group by readiness.
func (r *Registry) groupCounts(cs *discovery.ClusterSet) map[discovery.ServiceKey][2]int {
	out := map[discovery.ServiceKey][2]int{}
	for _, g := range cs.WorkloadGroups {
		out[g.Key()] = [2]int{}
	}
	for k, in := range r.instances {
		c, ok := out[k.group]
		if !ok {
			continue
		}
		if in.ready {
			c[0]++
		} else {
			c[1]++
		}
		out[k.group] = c
	}
	return out
}

// group returns a group of the last merged ClusterSet; r.mu is held.
func (r *Registry) group(k discovery.ServiceKey) (discovery.WorkloadGroup, bool) {
	if r.merged == nil {
		return discovery.WorkloadGroup{}, false
	}
	g, ok := r.merged.WorkloadGroup(k)
	if !ok {
		return discovery.WorkloadGroup{}, false
	}
	return *g, true
}

// Group returns a workload group as the registry serves it now (the last
// merged ClusterSet's), for a caller that must check a credential against
// the group before it joins; Join checks it again under the lock.
func (r *Registry) Group(k discovery.ServiceKey) (discovery.WorkloadGroup, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.group(k)
}

// Join registers (or refreshes) an instance of a group at address and
// returns the group. Without a probe the instance is ready at once;
// with one, from its first healthy report.
//
// authorize, when not nil, is asked first whether the caller may join the
// group: its error is returned as it is (the caller counts it).
func (r *Registry) Join(group discovery.ServiceKey, address string, labels map[string]string, authorize func(discovery.WorkloadGroup) error) (discovery.WorkloadGroup, error) {
	g, err := r.join(group, address, labels, authorize)
	var rf *Refusal
	if errors.As(err, &rf) {
		r.opts.Metrics.refused(rf.Reason)
	}
	if err != nil {
		return g, err
	}
	r.publish()
	return g, nil
}

func (r *Registry) join(group discovery.ServiceKey, address string, labels map[string]string, authorize func(discovery.WorkloadGroup) error) (discovery.WorkloadGroup, error) {
	if !r.joins.AllowN(r.opts.Now(), 1) {
		return discovery.WorkloadGroup{}, refuse(ReasonRateLimited, "more than %g joins a second", r.opts.Limits.JoinsPerSecond)
	}
	ip, err := netip.ParseAddr(address)
	if err != nil || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() {
		return discovery.WorkloadGroup{}, refuse(ReasonBadAddress, "%q is not a unicast IP address", address)
	}
	address = ip.String()
	if len(labels) > r.opts.Limits.MaxLabels {
		return discovery.WorkloadGroup{}, refuse(ReasonTooManyLabels, "%d labels, at most %d", len(labels), r.opts.Limits.MaxLabels)
	}
	for k, v := range labels {
		if !discovery.IsLabelKey(k) || !discovery.IsLabelValue(v) {
			return discovery.WorkloadGroup{}, refuse(ReasonTooManyLabels, "label %q=%q is not a Kubernetes label", k, v)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.group(group)
	if !ok {
		return g, refuse(ReasonUnknownGroup, "no workload group %s", group)
	}
	if authorize != nil {
		if err := authorize(g); err != nil {
			return g, err
		}
	}
	key := instanceKey{group, address}
	if in, ok := r.instances[key]; ok {
		in.labels, in.last = maps.Clone(labels), r.opts.Now()
		if g.Probe == nil {
			in.healthy = true
		}
		return g, nil
	}
	if err := r.addressFree(g, address); err != nil {
		return g, err
	}
	n := 0
	for k := range r.instances {
		if k.group == group {
			n++
		}
	}
	switch {
	case n >= r.opts.Limits.PerGroup:
		return g, refuse(ReasonGroupFull, "group %s has %d instances, at most %d", group, n, r.opts.Limits.PerGroup)
	case len(r.instances) >= r.opts.Limits.Total:
		return g, refuse(ReasonRegistryFull, "%d instances registered, at most %d", len(r.instances), r.opts.Limits.Total)
	}
	r.instances[key] = &instance{labels: maps.Clone(labels), healthy: g.Probe == nil, last: r.opts.Now()}
	r.opts.Log.Info("workload instance joined", "group", group.String(), "address", address)
	return g, nil
}

// addressFree refuses an address that an endpoint of the group's service
// in its cluster has (a pod, a declared instance) or that an instance of
// another group has.
func (r *Registry) addressFree(g discovery.WorkloadGroup, address string) error {
	for k := range r.instances {
		if k.address == address {
			return refuse(ReasonAddressTaken, "%s is registered in group %s", address, k.group)
		}
	}
	if c, ok := r.merged.Cluster(g.Cluster); ok {
		if s, ok := c.Service(g.ServiceKey()); ok {
			for _, e := range s.Endpoints {
				if e.Address == address {
					return refuse(ReasonAddressTaken, "service %s of cluster %s has an endpoint %s", s.Key(), c.Name, address)
				}
			}
		}
	}
	return nil
}

// Report records an instance's health and returns its group. authorize,
// when not nil, is asked first whether the caller may report for the group:
// its error is returned as it is (the caller counts it), and nothing
// changes. Report publishes only when the instance's readiness changes.
func (r *Registry) Report(group discovery.ServiceKey, address string, healthy bool, authorize func(discovery.WorkloadGroup) error) (discovery.WorkloadGroup, error) {
	g, changed, err := r.report(group, address, healthy, authorize)
	var rf *Refusal
	if errors.As(err, &rf) {
		r.opts.Metrics.refused(rf.Reason)
	}
	if err != nil {
		return g, err
	}
	r.opts.Metrics.reported(healthy)
	if changed {
		r.publish()
	}
	return g, nil
}

func (r *Registry) report(group discovery.ServiceKey, address string, healthy bool, authorize func(discovery.WorkloadGroup) error) (discovery.WorkloadGroup, bool, error) {
	if ip, err := netip.ParseAddr(address); err == nil {
		address = ip.String()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.group(group)
	if !ok {
		return g, false, refuse(ReasonUnknownGroup, "no workload group %s", group)
	}
	if authorize != nil {
		if err := authorize(g); err != nil {
			return g, false, err
		}
	}
	in, ok := r.instances[instanceKey{group, address}]
	if !ok {
		return g, false, refuse(ReasonNotRegistered, "%s is not registered in group %s; join again", address, group)
	}
	// One instance reports at most every MinReportGap; only then does it
	// take from the shared bucket, so that one agent's flood neither
	// drains it nor keeps the others from reporting.
	now := r.opts.Now()
	if gap := r.MinReportGap(); now.Sub(in.last) < gap {
		return g, false, refuse(ReasonRateLimited, "%s reports more often than every %s", address, gap)
	}
	if !r.reps.AllowN(now, 1) {
		return g, false, refuse(ReasonRateLimited, "more than %g reports a second", r.opts.Limits.ReportsPerSecond)
	}
	in.healthy, in.last = healthy, now
	return g, in.ready != healthy, nil
}

// MinReportGap is the shortest time between two reports of one instance
// that are taken: a tenth of the report interval.
func (r *Registry) MinReportGap() time.Duration { return r.opts.ReportInterval / 10 }

// Sweep marks instances whose reports stopped not ready, and removes those
// past their group's grace period or of groups that are gone. It publishes
// when anything changed.
func (r *Registry) Sweep() {
	r.mu.Lock()
	now := r.opts.Now()
	changed := false
	for k, in := range r.instances {
		g, ok := r.group(k.group)
		grace := cmp.Or(g.GracePeriod, discovery.DefaultGracePeriod)
		if !ok || now.Sub(in.last) > grace {
			delete(r.instances, k)
			changed = true
			reason := "grace period passed"
			if !ok {
				reason = "group gone"
			}
			r.opts.Metrics.removed(reason)
			r.opts.Log.Info("workload instance removed", "group", k.group.String(), "address", k.address, "reason", reason, "last_report", in.last)
			continue
		}
		if ready := in.healthy && now.Sub(in.last) <= r.StaleAfter(); ready != in.ready {
			changed = true
		}
	}
	r.mu.Unlock()
	if changed {
		r.publish()
	}
}

// Run sweeps every SweepInterval until ctx is done.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Sweep()
		}
	}
}

// Instances lists the registered instances, for debug pages: group,
// address, healthy, ready, last report.
func (r *Registry) Instances() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, 0, len(r.instances))
	for _, k := range slices.SortedFunc(maps.Keys(r.instances), compareKeys) {
		in := r.instances[k]
		out = append(out, Status{Group: k.group.String(), Address: k.address, Healthy: in.healthy, Ready: in.ready, LastReport: in.last, Labels: in.labels})
	}
	return out
}

// Status is one registered instance as debug pages show it.
type Status struct {
	Group      string            `json:"group"`
	Address    string            `json:"address"`
	Healthy    bool              `json:"healthy"`
	Ready      bool              `json:"ready"`
	LastReport time.Time         `json:"lastReport"`
	Labels     map[string]string `json:"labels,omitempty"`
}
