package policyfile

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts a Watcher's reloads. A nil *Metrics records nothing.
type Metrics struct {
	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	mismatches  prometheus.Gauge
}

// NewMetrics creates the policy metrics and registers them with reg (unless
// reg is nil):
//
//   - horizon_policy_reloads_total{result="ok|rejected"}: checks of the file,
//     on an edit or a topology change
//   - horizon_policy_last_reload_success_timestamp_seconds
//   - horizon_policy_topology_mismatch: 1 while the serving policy does not
//     pass the check against the current topology (a cluster or region it
//     names went away), else 0
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_policy_reloads_total",
			Help: "Checks of the failover policy file, by result: ok, or rejected (unreadable or invalid; the last good policy stays).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_policy_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last check of the failover policy file that succeeded.",
		}),
		mismatches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_policy_topology_mismatch",
			Help: "1 while the serving failover policy names clusters or localities the current ClusterSet lacks.",
		}),
	}
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("rejected")
	if reg != nil {
		reg.MustRegister(m.reloads, m.lastSuccess, m.mismatches)
	}
	return m
}

func (m *Metrics) ok(now time.Time) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
}

func (m *Metrics) rejected() {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues("rejected").Inc()
}

func (m *Metrics) mismatch(on bool) {
	if m == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	m.mismatches.Set(v)
}
