package certsvc

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts the certificate API's answers. A nil *Metrics records
// nothing.
type Metrics struct {
	issuedN  *prometheus.CounterVec
	refusals *prometheus.CounterVec
}

// allReasons are the reasons a request is refused, each a series from the
// start.
var allReasons = slices.Sorted(maps.Keys(hints))

// NewMetrics creates the API metrics and registers them with reg (unless
// nil):
//
//   - horizon_certs_api_issued_total{method="token|renewal"}: SVIDs issued
//     through the API, by how the caller proved its identity.
//   - horizon_certs_api_refusals_total{reason}: requests refused, by reason
//     (see the Reason constants).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		issuedN: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_certs_api_issued_total",
			Help: "X509-SVIDs issued by the certificate API, by how the caller authenticated (token, renewal).",
		}, []string{"method"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_certs_api_refusals_total",
			Help: "Certificate API requests refused, by reason.",
		}, []string{"reason"}),
	}
	for _, method := range []string{MethodToken, MethodRenewal} {
		m.issuedN.WithLabelValues(method)
	}
	for _, r := range allReasons {
		m.refusals.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.issuedN, m.refusals)
	}
	return m
}

func (m *Metrics) issued(method string) {
	if m != nil {
		m.issuedN.WithLabelValues(method).Inc()
	}
}

func (m *Metrics) refused(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
	}
}

// Issued is the counter of SVIDs issued by method (for tests and readers).
func (m *Metrics) Issued(method string) prometheus.Counter { return m.issuedN.WithLabelValues(method) }

// Refused is the counter of refusals for reason.
func (m *Metrics) Refused(reason string) prometheus.Counter {
	return m.refusals.WithLabelValues(reason)
}
