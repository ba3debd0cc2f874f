package kube

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Kubernetes source's metrics, labelled by member cluster (a
// small, configured set). A nil *Metrics records nothing.
type Metrics struct {
	state     *prometheus.GaugeVec
	lastEvent *prometheus.GaugeVec
	endpoints *prometheus.GaugeVec
	stale     *prometheus.GaugeVec
	expiredC  *prometheus.CounterVec
	invalid   *prometheus.GaugeVec
	lagGauge  *prometheus.GaugeVec
	loadErrs  *prometheus.CounterVec
	saveErrs  *prometheus.CounterVec
	savedAt   *prometheus.GaugeVec
	lwErrs    *prometheus.CounterVec
	relists   *prometheus.CounterVec
}

// NewMetrics registers the source's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_kube_cluster_state", Help: "1 for a member cluster's current state (syncing, synced, stale, persisted: served from the state persisted before a restart).",
		}, []string{"cluster", "state"}),
		lastEvent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_kube_last_event_timestamp_seconds", Help: "When a member cluster's informers last reported a change.",
		}, []string{"cluster"}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_kube_endpoints", Help: "Endpoints known in a member cluster.",
		}, []string{"cluster"}),
		stale: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_kube_stale_seconds", Help: "How long a member cluster has been unreachable (0 when reachable); alert on it before --stale-ttl expires its endpoints.",
		}, []string{"cluster"}),
		expiredC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_kube_stale_expired_total", Help: "Snapshots in which a member's endpoints were dropped because it was stale past the TTL.",
		}, []string{"cluster"}),
		invalid: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_kube_invalid_objects", Help: "Objects (or parts of them) skipped, by member cluster, kind and reason.",
		}, []string{"cluster", "kind", "reason"}),
		lagGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_kube_informer_lag_seconds", Help: "For the last change of a member cluster: from the informer's event to the ClusterSet that includes it.",
		}, []string{"cluster"}),
		loadErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_kube_state_load_errors_total", Help: "Persisted member states refused at start, by reason (corrupt, version, foreign, too_large, io); the member waits to sync.",
		}, []string{"reason"}),
		saveErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_kube_state_save_errors_total", Help: "Failed saves of a member cluster's state.",
		}, []string{"cluster"}),
		savedAt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_kube_state_saved_timestamp_seconds", Help: "When a member cluster's state was last persisted.",
		}, []string{"cluster"}),
		lwErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_kube_list_watch_errors_total", Help: "Failed lists and watches of a member cluster's informers, by reason (forbidden, unauthorized: the member is stale until allowed again; other).",
		}, []string{"cluster", "reason"}),
		relists: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_kube_relists_total", Help: "Lists of a member cluster's resources after its initial sync: client-go starting a watch over (410 Gone after an etcd compaction, or a failed list or watch).",
		}, []string{"cluster"}),
	}
	for _, r := range []string{StateCorrupt, StateVersion, StateForeign, StateTooLarge, StateIO} {
		m.loadErrs.WithLabelValues(r)
	}
	reg.MustRegister(m.state, m.lastEvent, m.endpoints, m.stale, m.expiredC, m.invalid, m.lagGauge, m.loadErrs, m.saveErrs, m.savedAt, m.lwErrs, m.relists)
	return m
}

var states = []State{Syncing, Synced, Stale, Persisted}

func (m *Metrics) setState(cluster string, s State, lastEvent time.Time, staleFor time.Duration) {
	if m == nil {
		return
	}
	for _, st := range states {
		v := 0.0
		if st == s {
			v = 1
		}
		m.state.WithLabelValues(cluster, string(st)).Set(v)
	}
	if !lastEvent.IsZero() {
		m.lastEvent.WithLabelValues(cluster).Set(float64(lastEvent.UnixNano()) / 1e9)
	}
	m.stale.WithLabelValues(cluster).Set(staleFor.Seconds())
}

func (m *Metrics) endpointsSet(cluster string, n int) {
	if m != nil {
		m.endpoints.WithLabelValues(cluster).Set(float64(n))
	}
}

func (m *Metrics) expired(cluster string) {
	if m != nil {
		m.expiredC.WithLabelValues(cluster).Inc()
	}
}

func (m *Metrics) invalidObject(cluster, kind, reason string) {
	if m != nil {
		m.invalid.WithLabelValues(cluster, kind, reason).Inc()
	}
}

func (m *Metrics) problems(cluster string, counts map[[2]string]int) {
	if m == nil {
		return
	}
	m.invalid.DeletePartialMatch(prometheus.Labels{"cluster": cluster})
	for k, n := range counts {
		m.invalid.WithLabelValues(cluster, k[0], k[1]).Set(float64(n))
	}
}

func (m *Metrics) lag(cluster string, d time.Duration) {
	if m != nil {
		m.lagGauge.WithLabelValues(cluster).Set(d.Seconds())
	}
}

func (m *Metrics) listWatchError(cluster, reason string) {
	if m != nil {
		m.lwErrs.WithLabelValues(cluster, reason).Inc()
	}
}

func (m *Metrics) relist(cluster string) {
	if m != nil {
		m.relists.WithLabelValues(cluster).Inc()
	}
}

func (m *Metrics) stateLoadFailed(reason string) {
	if m != nil {
		m.loadErrs.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) stateSaveFailed(cluster string) {
	if m != nil {
		m.saveErrs.WithLabelValues(cluster).Inc()
	}
}

func (m *Metrics) stateSaved(cluster string, at time.Time) {
	if m != nil {
		m.savedAt.WithLabelValues(cluster).Set(float64(at.UnixNano()) / 1e9)
	}
}

// removed forgets a member that is no longer configured.
func (m *Metrics) removed(cluster string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"cluster": cluster}
	for _, v := range []*prometheus.GaugeVec{m.state, m.lastEvent, m.endpoints, m.stale, m.invalid, m.lagGauge, m.savedAt} {
		v.DeletePartialMatch(l)
	}
	m.lwErrs.DeletePartialMatch(l)
	m.relists.DeletePartialMatch(l)
}
