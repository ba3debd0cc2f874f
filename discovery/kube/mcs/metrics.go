package mcs

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kinds of writes, the kind label of horizon_mcs_writes_total.
const (
	kindExportStatus = "ServiceExport/status"
	kindImport       = "ServiceImport"
	kindImportStatus = "ServiceImport/status"
)

// Results of writes, the result label of horizon_mcs_writes_total.
const (
	resultCreated  = "created"
	resultUpdated  = "updated"
	resultDeleted  = "deleted"
	resultConflict = "conflict" // 409: retried on a later round
	resultError    = "error"
	resultFailed   = "failed" // a failed EndpointSlice write
)

// Metrics are the MCS controller's metrics. A nil *Metrics records nothing.
type Metrics struct {
	writes  *prometheus.CounterVec
	leader  prometheus.Gauge
	exports *prometheus.GaugeVec
	rounds  *prometheus.CounterVec
	// MCS EndpointSlices (slices.go).
	sliceWrites *prometheus.CounterVec
	leftOut     *prometheus.GaugeVec
	lag         prometheus.Histogram
	// Leader election (election.go).
	electionFailures *prometheus.CounterVec
}

// NewMetrics creates the controller's metrics and registers them with reg
// when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_mcs_writes_total", Help: "Writes to member clusters by the MCS controller, by kind and result.",
		}, []string{"kind", "result"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_mcs_leader", Help: "1 while this replica holds the MCS controller lease and writes, else 0.",
		}),
		exports: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_mcs_exports", Help: "ServiceExports by desired condition and status, as of the leader's last round.",
		}, []string{"condition", "status"}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_mcs_rounds_total", Help: "Reconcile rounds by the leader, by result (ok, failed: some write failed).",
		}, []string{"result"}),
		sliceWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_mcs_endpointslice_writes_total", Help: "MCS EndpointSlice writes by the MCS controller, by member cluster and result (created, updated, deleted, failed).",
		}, []string{"cluster", "result"}),
		leftOut: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_mcs_endpoints_left_out", Help: "Endpoints left out of a member cluster's MCS EndpointSlices because they are on another network (split horizon), as of the leader's last round.",
		}, []string{"cluster"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "horizon_mcs_endpointslice_lag_seconds", Help: "Time from a ClusterSet change reaching the MCS controller to the last member's EndpointSlice write for it.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
		electionFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_mcs_leader_election_failures_total", Help: "Failed reads and writes of the MCS controller's Lease, by reason (forbidden, unauthorized, namespace_missing, error): while they last, this replica never writes.",
		}, []string{"reason"}),
	}
	for _, r := range []string{ElectionForbidden, ElectionUnauthorized, ElectionNamespaceMissing, ElectionError} {
		m.electionFailures.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.writes, m.leader, m.exports, m.rounds, m.sliceWrites, m.leftOut, m.lag, m.electionFailures)
	}
	return m
}

func (m *Metrics) write(kind, result string) {
	if m != nil {
		m.writes.WithLabelValues(kind, result).Inc()
	}
}

func (m *Metrics) setLeader(leading bool) {
	if m == nil {
		return
	}
	if leading {
		m.leader.Set(1)
		return
	}
	m.leader.Set(0)
	m.exports.Reset()
	m.leftOut.Reset()
}

func (m *Metrics) round(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.rounds.WithLabelValues("ok").Inc()
	} else {
		m.rounds.WithLabelValues("failed").Inc()
	}
}

func (m *Metrics) setExports(p Plan) {
	if m == nil {
		return
	}
	counts := map[[2]string]int{}
	for _, e := range p.Exports {
		for _, c := range e.Conditions {
			counts[[2]string{c.Type, string(c.Status)}]++
		}
	}
	m.exports.Reset()
	for _, t := range []string{"Valid", "Ready", "Conflict"} {
		for _, s := range []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse} {
			m.exports.WithLabelValues(t, string(s)).Set(float64(counts[[2]string{t, string(s)}]))
		}
	}
}

func (m *Metrics) sliceWrite(cluster, result string) {
	if m != nil {
		m.sliceWrites.WithLabelValues(cluster, result).Inc()
	}
}

func (m *Metrics) setLeftOut(l []LeftOut) {
	if m == nil {
		return
	}
	counts := map[string]int{}
	for _, lo := range l {
		counts[lo.Cluster] += lo.Count
	}
	m.leftOut.Reset()
	for c, n := range counts {
		m.leftOut.WithLabelValues(c).Set(float64(n))
	}
}

func (m *Metrics) sliceLag(d time.Duration) {
	if m != nil {
		m.lag.Observe(d.Seconds())
	}
}

func (m *Metrics) electionFailure(reason string) {
	if m != nil {
		m.electionFailures.WithLabelValues(reason).Inc()
	}
}
