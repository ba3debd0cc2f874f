package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/xds"
)

// Metrics are the xDS server's Prometheus metrics. A nil *Metrics records
// nothing, so tests may leave it out.
type Metrics struct {
	connected      *prometheus.GaugeVec
	pushes         *prometheus.CounterVec
	pushBytes      *prometheus.CounterVec
	nacks          *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	clamped        prometheus.Counter
	translate      prometheus.Histogram
	push           prometheus.Histogram
	views          prometheus.Gauge
	buildErrors    prometheus.Counter
	dropped        prometheus.Counter
	clusterSetInfo *prometheus.GaugeVec
	oversized      *prometheus.CounterVec
}

// NewMetrics registers the xDS metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_xds_connected_proxies", Help: "Proxies with an open xDS stream, by role and protocol (sotw, delta).",
		}, []string{"role", "protocol"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_xds_pushes_total", Help: "xDS responses sent, by resource type (cds, eds, lds, rds, other).",
		}, []string{"type"}),
		pushBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_xds_push_bytes_total", Help: "Bytes of resources sent, by resource type (cds, eds, lds, rds, other).",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_xds_nacks_total", Help: "Responses rejected by proxies, by resource type (cds, eds, lds, rds, other).",
		}, []string{"type"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_xds_rejected_streams_total", Help: "Streams refused or closed by Horizon, by reason (identity, cluster_unbound, claim_cluster, claim_role, claim_namespace, claim_service_account, claim_network, bad_node, node_too_large, node_changed, views, not_ready, send_timeout, too_many_names).",
		}, []string{"reason"}),
		clamped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "horizon_xds_clamped_localities_total", Help: "Streams whose declared locality the ClusterSet does not know in their cluster, clamped to the nearest known one.",
		}),
		translate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "horizon_xds_translate_duration_seconds", Help: "Time to render and check one view.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		push: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "horizon_xds_push_duration_seconds", Help: "Time from a ClusterSet change being applied to every view being published.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		views: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_xds_views", Help: "Distinct views currently rendered: proxies whose resources would be identical share one (xds.ViewKeys).",
		}),
		buildErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "horizon_xds_view_build_errors_total", Help: "Views that failed to render or check; the last good one kept serving.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "horizon_xds_dropped_responses_total", Help: "Responses dropped because a stream's queue was full. Horizon's stream engine queues none (a stream computes its response when it can send it), so it stays 0; kept for dashboards.",
		}),
		clusterSetInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_xds_clusterset_info", Help: "The ClusterSet version being served (value 1).",
		}, []string{"version"}),
	}
	m.oversized = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "horizon_xds_oversize_responses_total", Help: "State-of-the-world responses sent larger than --max-response-bytes because they could not be split (listeners, clusters, or one resource over it), by resource type (cds, eds, lds, rds, other).",
	}, []string{"type"})
	reg.MustRegister(m.oversized)
	reg.MustRegister(m.connected, m.pushes, m.pushBytes, m.nacks, m.rejected, m.clamped, m.translate, m.push, m.views, m.buildErrors, m.dropped, m.clusterSetInfo)
	return m
}

func (m *Metrics) streamOpened(role xds.Role, protocol string, delta float64) {
	if m != nil {
		m.connected.WithLabelValues(string(role), protocol).Add(delta)
	}
}

func (m *Metrics) pushed(typeURL string, bytes int) {
	if m != nil {
		m.pushes.WithLabelValues(discovery.XDSTypeName(typeURL)).Inc()
		m.pushBytes.WithLabelValues(discovery.XDSTypeName(typeURL)).Add(float64(bytes))
	}
}

func (m *Metrics) nacked(typeURL string) {
	if m != nil {
		m.nacks.WithLabelValues(discovery.XDSTypeName(typeURL)).Inc()
	}
}

func (m *Metrics) clampedLocality() {
	if m != nil {
		m.clamped.Inc()
	}
}

func (m *Metrics) rejectedStream(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) translated(seconds float64) {
	if m != nil {
		m.translate.Observe(seconds)
	}
}

func (m *Metrics) pushDone(seconds float64, version string) {
	if m != nil {
		m.push.Observe(seconds)
		m.clusterSetInfo.Reset()
		m.clusterSetInfo.WithLabelValues(version).Set(1)
	}
}

func (m *Metrics) setViews(n int) {
	if m != nil {
		m.views.Set(float64(n))
	}
}

func (m *Metrics) buildError() {
	if m != nil {
		m.buildErrors.Inc()
	}
}

func (m *Metrics) oversize(typeURL string) {
	if m != nil {
		m.oversized.WithLabelValues(discovery.XDSTypeName(typeURL)).Inc()
	}
}
