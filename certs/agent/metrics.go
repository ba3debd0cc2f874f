package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Metrics records the agent's SVID and its requests. A nil *Metrics records
// nothing.
type Metrics struct {
	expiry   prometheus.Gauge
	attempts *prometheus.CounterVec
}

// NewMetrics creates the agent metrics and registers them with reg (unless
// nil):
//
//   - horizon_agent_svid_expiry_timestamp_seconds: when the current SVID
//     expires.
//   - horizon_agent_requests_total{result="token|renewal|error"}: requests
//     for an SVID, by how they succeeded, or that they failed.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_agent_svid_expiry_timestamp_seconds",
			Help: "Unix time at which the agent's current X509-SVID expires.",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_agent_requests_total",
			Help: "Requests for an X509-SVID, by result: token or renewal (succeeded that way), error.",
		}, []string{"result"}),
	}
	for _, r := range []string{"token", "renewal", "error"} {
		m.attempts.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.expiry, m.attempts)
	}
	return m
}

func (m *Metrics) attempt(result string) {
	if m != nil {
		m.attempts.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) observe(svid *x509svid.SVID) {
	if m != nil {
		m.expiry.Set(float64(svid.Certificates[0].NotAfter.UnixNano()) / 1e9)
	}
}

// Failures is the counter of failed requests.
func (m *Metrics) Failures() prometheus.Counter { return m.attempts.WithLabelValues("error") }
