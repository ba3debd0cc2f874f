package policyfile

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/internal/filewatch"
)

// Metrics counts a Watcher's reloads. A nil *Metrics records nothing.
type Metrics struct {
	*filewatch.Reloads
	mismatches  prometheus.Gauge
	routeErrors prometheus.Gauge
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
//   - horizon_policy_route_errors: the problems the last check of the file
//     found in its routes: section (route rules that contradict each other,
//     unknown subsets, clusters or services, weights not adding up to 100);
//     0 when it passed
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Reloads: filewatch.NewReloads(reg, "horizon_policy", "the failover policy file"),
		mismatches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_policy_topology_mismatch",
			Help: "1 while the serving failover policy names clusters or localities the current ClusterSet lacks.",
		}),
	}
	m.routeErrors = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "horizon_policy_route_errors",
		Help: "Problems the last check of the policy file found in its routes: section; 0 when it passed.",
	})
	if reg != nil {
		reg.MustRegister(m.mismatches, m.routeErrors)
	}
	return m
}

func (m *Metrics) reloads() *filewatch.Reloads {
	if m == nil {
		return nil
	}
	return m.Reloads
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

// routeProblems records how many of the last check's errors are in the
// routes: section.
func (m *Metrics) routeProblems(n int) {
	if m == nil {
		return
	}
	m.routeErrors.Set(float64(n))
}
