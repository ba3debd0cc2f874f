package health

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics records a Prober's view of the gateways. A nil *Metrics records
// nothing. Series labelled by gateway exist only while the gateway is in the
// ClusterSet: they are deleted when it leaves.
type Metrics struct {
	up        *prometheus.GaugeVec
	failures  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	withdrawn prometheus.Gauge
	blind     prometheus.Gauge
}

// NewMetrics creates the gateway prober's metrics and registers them with reg
// (unless reg is nil):
//
//   - horizon_gateway_up{network,address}: 1 while the gateway is up or not
//     probed yet, 0 while it is down (and withdrawn, unless the prober is blind);
//     network is the networks listing the address, comma-joined
//   - horizon_gateway_probe_failures_total{network,address}
//   - horizon_gateway_probe_duration_seconds{result="ok|fail"}
//   - horizon_gateway_withdrawn: gateways left out of the served ClusterSet
//   - horizon_gateway_prober_blind: 1 while no network's gateway answers, so
//     the prober assumes it is the one cut off and withdraws nothing
func NewMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"network", "address"}
	m := &Metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_gateway_up",
			Help: "Health of an east-west gateway address by TCP probes: 1 up or not probed yet, 0 down (withdrawn from other networks' views unless horizon_gateway_prober_blind is 1).",
		}, labels),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_gateway_probe_failures_total",
			Help: "TCP connect probes of an east-west gateway that failed or timed out.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "horizon_gateway_probe_duration_seconds",
			Help:    "Time a TCP connect probe of an east-west gateway took, by result (ok, fail).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"result"}),
		withdrawn: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_gateway_withdrawn",
			Help: "East-west gateways currently withdrawn from every view because their probes fail.",
		}),
		blind: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_gateway_prober_blind",
			Help: "1 while no gateway of any network answers: the prober assumes it is cut off itself and withdraws nothing.",
		}),
	}
	m.duration.WithLabelValues("ok")
	m.duration.WithLabelValues("fail")
	if reg != nil {
		reg.MustRegister(m.up, m.failures, m.duration, m.withdrawn, m.blind)
	}
	return m
}

func (m *Metrics) add(network, address string, up bool) {
	if m == nil {
		return
	}
	m.setUp(network, address, up)
	m.failures.WithLabelValues(network, address) // exists from the start, so rate() sees the first failure
}

func (m *Metrics) forget(network, address string) {
	if m == nil {
		return
	}
	m.up.DeleteLabelValues(network, address)
	m.failures.DeleteLabelValues(network, address)
}

func (m *Metrics) setUp(network, address string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.up.WithLabelValues(network, address).Set(v)
}

func (m *Metrics) probed(network, address string, ok bool, seconds float64) {
	if m == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "fail"
		m.failures.WithLabelValues(network, address).Inc()
	}
	m.duration.WithLabelValues(result).Observe(seconds)
}

func (m *Metrics) state(withdrawn int, blind bool) {
	if m == nil {
		return
	}
	m.withdrawn.Set(float64(withdrawn))
	b := 0.0
	if blind {
		b = 1
	}
	m.blind.Set(b)
}
