package filewatch

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reloads counts the loads of a followed file. A nil *Reloads records
// nothing.
type Reloads struct {
	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

// NewReloads creates <prefix>_reloads_total{result="ok|rejected"} and
// <prefix>_last_reload_success_timestamp_seconds for the file described by
// what, and registers them with reg (unless nil). Both results exist from
// the start, so that rate() sees the first rejection.
func NewReloads(reg prometheus.Registerer, prefix, what string) *Reloads {
	r := &Reloads{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_reloads_total",
			Help: "Loads of " + what + ", by result: ok, or rejected (unreadable or invalid; the last good one stays).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: prefix + "_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last load of " + what + " that succeeded.",
		}),
	}
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("rejected")
	if reg != nil {
		reg.MustRegister(r.reloads, r.lastSuccess)
	}
	return r
}

// OK counts a load that succeeded at now.
func (r *Reloads) OK(now time.Time) {
	if r == nil {
		return
	}
	r.reloads.WithLabelValues("ok").Inc()
	r.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
}

// Rejected counts a load that failed.
func (r *Reloads) Rejected() {
	if r != nil {
		r.reloads.WithLabelValues("rejected").Inc()
	}
}

// Count is the number of loads with result (ok, rejected), for tests.
func (r *Reloads) Count(result string) prometheus.Counter { return r.reloads.WithLabelValues(result) }

// LastSuccess is the timestamp gauge, for tests.
func (r *Reloads) LastSuccess() prometheus.Gauge { return r.lastSuccess }
