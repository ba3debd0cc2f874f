package connguard

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Why a Guard refuses a connection, a stream or a message: the reason label
// of horizon_transport_refusals_total, and the first word of the error a
// refused stream gets.
const (
	ReasonMaxConns          = "max_conns"            // MaxConns open already: closed at accept
	ReasonMaxConnsPerSource = "max_conns_per_source" // MaxConnsPerSource open from its IP: closed at accept
	ReasonRate              = "rate"                 // no token within MaxStreamWait: codes.Unavailable
	ReasonMessageSize       = "message_size"         // over MaxFirstMsgSize or MaxRecvMsgSize: codes.ResourceExhausted
	ReasonRapidReset        = "rapid_reset"          // too many early resets: GOAWAY(ENHANCE_YOUR_CALM), closed
)

var refusalReasons = []string{ReasonMaxConns, ReasonMaxConnsPerSource, ReasonRate, ReasonMessageSize, ReasonRapidReset}

// Why a TLS handshake failed: the reason label of
// horizon_transport_tls_handshake_failures_total (handshakeReason).
const (
	HandshakeNoCertificate  = "no_certificate"  // a client certificate was required and none came
	HandshakeUntrusted      = "untrusted"       // the certificate does not chain to the trust bundle
	HandshakeTrustDomain    = "trust_domain"    // its SPIFFE ID is in a trust domain Horizon has no bundle for
	HandshakeExpired        = "expired"         // a certificate of the chain is expired or not yet valid
	HandshakeBadCertificate = "bad_certificate" // not an X509-SVID (a CA as leaf, key usage, SAN) or unparsable
	HandshakeClientAlert    = "client_alert"    // the client aborted with a TLS alert: usually it does not trust Horizon
	HandshakeProtocol       = "protocol"        // not TLS, no common version, cipher suite or ALPN
	HandshakeTimeout        = "timeout"         // not done within HandshakeTimeout
	HandshakeClosed         = "closed"          // the client went away first (a TCP probe, say): counted, not logged
	HandshakeOther          = "other"
)

var handshakeReasons = []string{
	HandshakeNoCertificate, HandshakeUntrusted, HandshakeTrustDomain, HandshakeExpired, HandshakeBadCertificate,
	HandshakeClientAlert, HandshakeProtocol, HandshakeTimeout, HandshakeClosed, HandshakeOther,
}

// Metrics count what the Guards of a process refuse. One Metrics serves
// every port; each Guard labels its series with its port. A nil *Metrics
// records nothing.
type Metrics struct {
	refusals   *prometheus.CounterVec
	handshakes *prometheus.CounterVec
	conns      *prometheus.GaugeVec
	wait       *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg (unless reg is
// nil):
//
//   - horizon_transport_refusals_total{port,reason}: connections, streams
//     and messages refused, by reason (max_conns, max_conns_per_source,
//     rate, message_size, rapid_reset).
//   - horizon_transport_tls_handshake_failures_total{port,reason}: failed
//     TLS handshakes, by reason (no_certificate, untrusted, trust_domain,
//     expired, bad_certificate, client_alert, protocol, timeout, closed,
//     other).
//   - horizon_transport_connections{port}: open connections.
//   - horizon_transport_stream_wait_seconds{port}: how long admitted new
//     streams and calls waited for their token.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_transport_refusals_total",
			Help: "Connections, streams and messages refused, by port and reason (max_conns, max_conns_per_source, rate, message_size, rapid_reset).",
		}, []string{"port", "reason"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_transport_tls_handshake_failures_total",
			Help: "Failed TLS handshakes, by port and reason (no_certificate, untrusted, trust_domain, expired, bad_certificate, client_alert, protocol, timeout, closed, other).",
		}, []string{"port", "reason"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_transport_connections",
			Help: "Open connections, by port.",
		}, []string{"port"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "horizon_transport_stream_wait_seconds",
			Help:    "Time admitted new streams and calls waited for a token of the port's rate limit.",
			Buckets: []float64{0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"port"}),
	}
	if reg != nil {
		reg.MustRegister(m.refusals, m.handshakes, m.conns, m.wait)
	}
	return m
}

// port creates a port's series, so that rate() sees the first event.
func (m *Metrics) port(port string, tls bool) {
	if m == nil {
		return
	}
	for _, r := range refusalReasons {
		m.refusals.WithLabelValues(port, r)
	}
	if tls {
		for _, r := range handshakeReasons {
			m.handshakes.WithLabelValues(port, r)
		}
	}
	m.conns.WithLabelValues(port)
	m.wait.WithLabelValues(port)
}

func (m *Metrics) refused(port, reason string) {
	if m != nil {
		m.refusals.WithLabelValues(port, reason).Inc()
	}
}

func (m *Metrics) handshakeFailed(port, reason string) {
	if m != nil {
		m.handshakes.WithLabelValues(port, reason).Inc()
	}
}

func (m *Metrics) connections(port string, delta float64) {
	if m != nil {
		m.conns.WithLabelValues(port).Add(delta)
	}
}

func (m *Metrics) waited(port string, d time.Duration) {
	if m != nil {
		m.wait.WithLabelValues(port).Observe(d.Seconds())
	}
}

// Refusals is the refusal counter of port and reason, for tests.
func (m *Metrics) Refusals(port, reason string) prometheus.Counter {
	return m.refusals.WithLabelValues(port, reason)
}

// HandshakeFailures is the handshake failure counter of port and reason,
// for tests.
func (m *Metrics) HandshakeFailures(port, reason string) prometheus.Counter {
	return m.handshakes.WithLabelValues(port, reason)
}

// Connections is the open-connections gauge of port, for tests.
func (m *Metrics) Connections(port string) prometheus.Gauge {
	return m.conns.WithLabelValues(port)
}
