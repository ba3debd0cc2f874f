package workload

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/discovery"
)

// Metrics are the registry's. A nil *Metrics records nothing.
type Metrics struct {
	instances *prometheus.GaugeVec
	groups    prometheus.Gauge
	refusals  *prometheus.CounterVec
	reports   *prometheus.CounterVec
	removals  *prometheus.CounterVec
	failed    prometheus.Counter
}

// NewMetrics creates the registry's metrics and registers them with reg
// (unless nil):
//
//   - horizon_workloads{group,health="ready|not_ready"}: registered
//     instances of each workload group
//   - horizon_workload_groups: workload groups merged into the ClusterSet
//   - horizon_workload_refusals_total{reason}: joins and reports refused
//   - horizon_workload_reports_total{health="healthy|unhealthy"}
//   - horizon_workload_removals_total{reason}: instances removed
//   - horizon_workload_merge_failures_total: merges that kept the last
//     good ClusterSet
//
// The group label is bounded by the number of groups in the files.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "horizon_workloads", Help: "Registered instances of each workload group, by health."}, []string{"group", "health"}),
		groups:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "horizon_workload_groups", Help: "Workload groups merged into the ClusterSet."}),
		refusals:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "horizon_workload_refusals_total", Help: "Workload joins and reports refused, by reason."}, []string{"reason"}),
		reports:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "horizon_workload_reports_total", Help: "Health reports of workload agents, by health."}, []string{"health"}),
		removals:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "horizon_workload_removals_total", Help: "Registered workload instances removed, by reason."}, []string{"reason"}),
		failed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "horizon_workload_merge_failures_total", Help: "Merges of workloads into a ClusterSet that failed; the last good ClusterSet keeps serving."}),
	}
	if reg != nil {
		reg.MustRegister(m.instances, m.groups, m.refusals, m.reports, m.removals, m.failed)
	}
	return m
}

func (m *Metrics) set(cs *discovery.ClusterSet, counts map[discovery.ServiceKey][2]int) {
	if m == nil {
		return
	}
	m.instances.Reset()
	for k, c := range counts {
		m.instances.WithLabelValues(k.String(), "ready").Set(float64(c[0]))
		m.instances.WithLabelValues(k.String(), "not_ready").Set(float64(c[1]))
	}
	m.groups.Set(float64(len(cs.WorkloadGroups)))
}

// RefusalsFor is the refusal counter of a reason (tests read it).
func (m *Metrics) RefusalsFor(reason string) prometheus.Counter {
	return m.refusals.WithLabelValues(reason)
}

// Refused counts a refusal by reason (the join service's own reasons too).
func (m *Metrics) Refused(reason string) { m.refused(reason) }

func (m *Metrics) refused(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) reported(healthy bool) {
	if m != nil {
		m.reports.WithLabelValues(map[bool]string{true: "healthy", false: "unhealthy"}[healthy]).Inc()
	}
}

func (m *Metrics) removed(reason string) {
	if m != nil {
		m.removals.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) mergeFailed() {
	if m != nil {
		m.failed.Inc()
	}
}
