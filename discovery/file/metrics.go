package file

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts a Watcher's reloads. A nil *Metrics records nothing.
type Metrics struct {
	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

// NewMetrics creates the file source's metrics and registers them with reg
// (unless reg is nil):
//
//   - horizon_file_reloads_total{result="ok|rejected"}
//   - horizon_file_last_reload_success_timestamp_seconds
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_file_reloads_total",
			Help: "Loads of the local ClusterSet file, by result: ok, or rejected (unreadable or invalid; the last good ClusterSet stays).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_file_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last load of the local ClusterSet file that succeeded.",
		}),
	}
	// Both results exist from the start, so that rate() sees the first rejection.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("rejected")
	if reg != nil {
		reg.MustRegister(m.reloads, m.lastSuccess)
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
