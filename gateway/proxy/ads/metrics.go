package ads

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/discovery"
)

// Metrics are the gateway's xDS client metrics.
type Metrics struct {
	responses *prometheus.CounterVec
	connected prometheus.Gauge
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_gateway_xds_responses_total", Help: "xDS responses received, by type (cds, eds, lds, other) and result (ack, nack).",
		}, []string{"type", "result"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_gateway_xds_connected", Help: "1 while the ADS stream to Horizon is open.",
		}),
	}
	reg.MustRegister(m.responses, m.connected)
	return m
}

func (m *Metrics) response(typeURL, result string) {
	if m != nil {
		m.responses.WithLabelValues(discovery.XDSTypeName(typeURL), result).Inc()
	}
}

func (m *Metrics) setConnected(up bool) {
	if m != nil {
		v := 0.0
		if up {
			v = 1
		}
		m.connected.Set(v)
	}
}
