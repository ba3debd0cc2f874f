package sni

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Result is how a connection through the gateway ended its setup: a fixed,
// small set, used as a metric label.
type Result string

// Connection results.
const (
	// Routed: an upstream endpoint accepted the connection.
	Routed Result = "routed"
	// UnknownSNI: no route for the server name; the connection was closed.
	UnknownSNI Result = "unknown_sni"
	// BadHello: not TLS, a malformed ClientHello, or one without a server name.
	BadHello Result = "bad_hello"
	// ClientClosed: the client closed before sending a byte (a TCP probe).
	ClientClosed Result = "client_closed"
	// Timeout: the ClientHello did not arrive within the hello timeout.
	Timeout Result = "timeout"
	// RefusedOverload: closed at once: MaxConns connections were open, all
	// past their ClientHello.
	RefusedOverload Result = "refused_overload"
	// RefusedSourceLimit: closed at once: MaxConnsPerSource connections were
	// open from its address, all past their ClientHello.
	RefusedSourceLimit Result = "refused_source_limit"
	// ShedOverload: closed before its ClientHello had arrived, the oldest
	// such connection, to make room for a new one when MaxConns were open.
	ShedOverload Result = "shed_overload"
	// ShedSourceLimit: closed before its ClientHello had arrived, the oldest
	// such connection of its address, to make room for a new one from that
	// address when MaxConnsPerSource were open from it.
	ShedSourceLimit Result = "shed_source_limit"
	// UpstreamFailed: no endpoint of the route accepted the connection.
	UpstreamFailed Result = "upstream_failed"
)

var results = []Result{
	Routed, UnknownSNI, BadHello, ClientClosed, Timeout,
	RefusedOverload, RefusedSourceLimit, ShedOverload, ShedSourceLimit, UpstreamFailed,
}

// Metrics are the gateway's Prometheus metrics. No label carries a server
// name or an address: cardinality is fixed. A nil *Metrics records nothing.
type Metrics struct {
	connections     *prometheus.CounterVec
	active          prometheus.Gauge
	bytes           *prometheus.CounterVec
	connectFailures prometheus.Counter
	routes          prometheus.Gauge
	endpoints       prometheus.Gauge
}

// NewMetrics registers the gateway metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_gateway_connections_total", Help: "Connections accepted by the gateway, by result.",
		}, []string{"result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_gateway_active_connections", Help: "Connections open now, from accept to close.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_gateway_proxied_bytes_total", Help: "Bytes copied, by direction (to_upstream, to_client), counted when a direction ends.",
		}, []string{"direction"}),
		connectFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "horizon_gateway_upstream_connect_failures_total", Help: "Failed connection attempts to upstream endpoints (each attempt counts).",
		}),
		routes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_gateway_routes", Help: "Server names in the routing table.",
		}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_gateway_route_endpoints", Help: "Endpoints in the routing table, summed over server names.",
		}),
	}
	for _, r := range results {
		m.connections.WithLabelValues(string(r))
	}
	m.bytes.WithLabelValues("to_upstream")
	m.bytes.WithLabelValues("to_client")
	reg.MustRegister(m.connections, m.active, m.bytes, m.connectFailures, m.routes, m.endpoints)
	return m
}

func (m *Metrics) result(r Result) {
	if m != nil {
		m.connections.WithLabelValues(string(r)).Inc()
	}
}

func (m *Metrics) addActive(d float64) {
	if m != nil {
		m.active.Add(d)
	}
}

func (m *Metrics) copied(direction string, n int64) {
	if m != nil && n > 0 {
		m.bytes.WithLabelValues(direction).Add(float64(n))
	}
}

func (m *Metrics) connectFailed() {
	if m != nil {
		m.connectFailures.Inc()
	}
}

func (m *Metrics) table(routes, endpoints int) {
	if m != nil {
		m.routes.Set(float64(routes))
		m.endpoints.Set(float64(endpoints))
	}
}
