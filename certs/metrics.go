package certs

import (
	"crypto/x509"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics records the expiry of CAs and the SVIDs they issue. A nil *Metrics
// records nothing.
type Metrics struct {
	expiry     *prometheus.GaugeVec
	issuedN    prometheus.Counter
	refusals   *prometheus.CounterVec
	lifetime   prometheus.Histogram
	svidExpiry prometheus.Gauge

	mu             sync.Mutex
	lastSVIDExpiry time.Time // what svidExpiry shows
}

// issueReasons are the reasons Issue and SignCSR refuse, each a series from
// the start so that rate() sees the first refusal.
var issueReasons = []Reason{ReasonID, ReasonTrustDomain, ReasonCSR, ReasonKey, ReasonTTL, ReasonCAExpired, ReasonCluster, ReasonInternal}

// NewMetrics creates the CA metrics and registers them with reg (unless reg
// is nil):
//
//   - horizon_certs_expiry_timestamp_seconds{kind="root|intermediate",cluster}:
//     when a CA made or loaded with these metrics expires. For a root, cluster
//     is "" and the time is the root's own; for an intermediate it is the
//     earliest expiry among it and the intermediates above it.
//   - horizon_certs_svids_issued_total: X509-SVIDs issued.
//   - horizon_certs_svid_refusals_total{reason}: issuances refused, by Reason.
//   - horizon_certs_svid_lifetime_seconds: histogram of the lifetime each
//     issued SVID got; it drops below the requested TTL as a CA nears its
//     expiry (an SVID never outlives its CA).
//   - horizon_certs_svid_expiry_timestamp_seconds: the latest expiry of any
//     SVID issued so far. If issuance stops, every workload's SVID has expired
//     by then: alert well before it.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_certs_expiry_timestamp_seconds",
			Help: "Unix time at which a CA expires, by kind (root, intermediate) and member cluster (intermediates).",
		}, []string{"kind", "cluster"}),
		issuedN: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "horizon_certs_svids_issued_total",
			Help: "X509-SVIDs issued.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_certs_svid_refusals_total",
			Help: "X509-SVID issuances refused, by reason (id, trust_domain, csr, key, ttl, ca_expired, cluster, internal).",
		}, []string{"reason"}),
		lifetime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "horizon_certs_svid_lifetime_seconds",
			Help:    "Lifetime (NotAfter - issuance time) of the X509-SVIDs issued; shorter than asked when capped by a CA's expiry.",
			Buckets: []float64{60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 48 * 3600, 7 * 24 * 3600},
		}),
		svidExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_certs_svid_expiry_timestamp_seconds",
			Help: "Unix time at which the last-expiring X509-SVID issued so far expires.",
		}),
	}
	for _, r := range issueReasons {
		m.refusals.WithLabelValues(string(r))
	}
	if reg != nil {
		reg.MustRegister(m.expiry, m.issuedN, m.refusals, m.lifetime, m.svidExpiry)
	}
	return m
}

func (m *Metrics) observeCA(ca *CA) {
	if m == nil {
		return
	}
	m.expiry.WithLabelValues("root", "").Set(unixSeconds(ca.Root().NotAfter))
	if !ca.IsRoot() {
		m.expiry.WithLabelValues("intermediate", ca.cluster).Set(unixSeconds(ca.notAfter()))
	}
}

func (m *Metrics) issued(leaf *x509.Certificate, now time.Time) {
	if m == nil {
		return
	}
	m.issuedN.Inc()
	m.lifetime.Observe(leaf.NotAfter.Sub(now).Seconds())
	m.mu.Lock()
	defer m.mu.Unlock()
	if leaf.NotAfter.After(m.lastSVIDExpiry) {
		m.lastSVIDExpiry = leaf.NotAfter
		m.svidExpiry.Set(unixSeconds(leaf.NotAfter))
	}
}

func (m *Metrics) refused(err error) {
	if m == nil {
		return
	}
	r := ReasonOf(err)
	if r == "" {
		r = ReasonInternal
	}
	m.refusals.WithLabelValues(string(r)).Inc()
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
