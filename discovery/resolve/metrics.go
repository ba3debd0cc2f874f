package resolve

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/discovery"
)

// Metrics count the Resolver's lookups. A nil *Metrics records nothing.
type Metrics struct {
	lookups           *prometheus.CounterVec
	resolved          *prometheus.GaugeVec
	unreachableRoutes prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (unless nil):
//
//   - horizon_external_dns_lookups_total{result="ok|failed"}
//   - horizon_external_dns_names{state="resolved|failed"}: names whose last
//     lookup succeeded, or failed (these serve their last good addresses)
//   - horizon_external_unreachable_routes: (external service, network)
//     pairs whose proxies are refused the service (networks: leaves the
//     network out), so get no route to it
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_external_dns_lookups_total", Help: "DNS lookups of external services' names, by result.",
		}, []string{"result"}),
		resolved: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_external_dns_names", Help: "External services' DNS names, by the state of their last lookup.",
		}, []string{"state"}),
		unreachableRoutes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_external_unreachable_routes", Help: "(external service, network) pairs refused a route: the network cannot reach the service.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.lookups, m.resolved, m.unreachableRoutes)
	}
	return m
}

func (m *Metrics) lookup(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.lookups.WithLabelValues("ok").Inc()
	} else {
		m.lookups.WithLabelValues("failed").Inc()
	}
}

func (m *Metrics) names(resolved, failed int) {
	if m == nil {
		return
	}
	m.resolved.WithLabelValues("resolved").Set(float64(resolved))
	m.resolved.WithLabelValues("failed").Set(float64(failed))
}

// unreachable counts the (external service, network) pairs of cs without
// a route.
func (m *Metrics) unreachable(cs *discovery.ClusterSet) {
	if m == nil {
		return
	}
	n := 0
	networks := cs.Networks()
	for i := range cs.External {
		for _, net := range networks {
			if !cs.External[i].ReachableFrom(net) {
				n++
			}
		}
	}
	m.unreachableRoutes.Set(float64(n))
}
