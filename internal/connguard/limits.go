package connguard

import "time"

// Limits are what one port lets its clients hold. A zero field takes its
// default (DefaultLimits).
type Limits struct {
	// MaxConns bounds the port's open connections (default 20,000). A
	// replica serves a few thousand proxies, one connection each; the
	// default leaves room for a reconnect storm during a rollout while
	// bounding file descriptors and per-connection buffers (each gRPC
	// connection holds about 64 KiB of buffers and three goroutines).
	MaxConns int
	// MaxConnsPerSource bounds the open connections from one remote IP
	// address (default 256): the proxies behind a NAT (a node's SNAT, a
	// cross-network gateway) share one address, and a node runs up to 110
	// pods by default; 256 covers them with a second connection each
	// while they reconnect. IPv6 addresses count one by one.
	MaxConnsPerSource int
	// MaxConcurrentStreams bounds the open HTTP/2 streams of one connection
	// (default 100): Envoy and gRPC clients keep one ADS stream per
	// connection; 100 is the least RFC 9113 recommends and what gRPC
	// clients assume until told.
	MaxConcurrentStreams uint32
	// MaxRecvMsgSize bounds any message a client sends (default 4 MiB,
	// gRPC's own default made explicit): a discovery request naming
	// tens of thousands of resources fits.
	MaxRecvMsgSize int
	// MaxFirstMsgSize bounds a stream's first message, and a unary call's
	// request, which arrive before the stream is identified (default
	// 1 MiB). A delta xDS stream's first request after a reconnect lists
	// every resource of its type the proxy holds (initial_resource_versions,
	// about 90 bytes each): 1 MiB covers about 11,000 clusters.
	MaxFirstMsgSize int
	// MaxHeaderListSize bounds the header list of one stream (default
	// 64 KiB; gRPC's default is 16 MiB). gRPC's own headers take a few
	// hundred bytes; the largest honest header is a service account token
	// (a few KiB).
	MaxHeaderListSize uint32
	// StreamRate and StreamBurst are the port's token bucket for new
	// streams and unary calls (defaults 2,000 a second, burst 4,000). Each
	// new ADS stream costs a full push (every resource type); 2,000 a
	// second is about what one replica on two cores renders for new
	// streams (bench/RESULTS.md (f): 5,000 proxies resynced in 2.4–2.9 s),
	// so a storm up to the burst is admitted at once, and a larger one
	// (20,000 proxies after a rollout) queues at the rate the server can
	// push instead of collapsing every stream's latency. A stream waits
	// for its token; see MaxStreamWait.
	StreamRate  float64
	StreamBurst int
	// MaxStreamWait is the longest a new stream waits for its token
	// (default 10 s). One that would wait longer is refused at once with
	// codes.Unavailable ("rate"), and its client retries with backoff, so
	// that the waiting streams (each one a goroutine) stay bounded by
	// StreamRate × MaxStreamWait.
	MaxStreamWait time.Duration
	// HandshakeTimeout bounds a new connection's TLS handshake and HTTP/2
	// preface (default 10 s; gRPC's default is 120 s). A handshake takes
	// milliseconds; a client that stalls it holds a connection slot.
	HandshakeTimeout time.Duration
	// RapidResets is how many early resets (MinStreamLifetime) and streams
	// past MaxConcurrentStreams one connection may make within
	// RapidResetWindow (defaults 100 a minute); one more and it is sent
	// GOAWAY(ENHANCE_YOUR_CALM) and closed. Honest clients make a handful:
	// one ADS stream per connection, cancelled when the proxy leaves.
	RapidResets      int
	RapidResetWindow time.Duration
	// MinStreamLifetime is the age under which a stream the client resets
	// counts as an early reset (default 1 s, as Envoy's overload manager
	// counts premature resets).
	MinStreamLifetime time.Duration
	// LingerTimeout bounds how long an abusive connection stays open after
	// its GOAWAY, for the frame to be read before the close (default 1 s).
	LingerTimeout time.Duration
}

// DefaultLimits are the limits of Horizon's gRPC ports; the fields' comments
// say why.
func DefaultLimits() Limits {
	return Limits{
		MaxConns:             20000,
		MaxConnsPerSource:    256,
		MaxConcurrentStreams: 100,
		MaxRecvMsgSize:       4 << 20,
		MaxFirstMsgSize:      1 << 20,
		MaxHeaderListSize:    64 << 10,
		StreamRate:           2000,
		StreamBurst:          4000,
		MaxStreamWait:        10 * time.Second,
		HandshakeTimeout:     10 * time.Second,
		RapidResets:          100,
		RapidResetWindow:     time.Minute,
		MinStreamLifetime:    time.Second,
		LingerTimeout:        time.Second,
	}
}

// withDefaults is l with each zero field set to its default.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.MaxConns, d.MaxConns)
	set(&l.MaxConnsPerSource, d.MaxConnsPerSource)
	set(&l.MaxRecvMsgSize, d.MaxRecvMsgSize)
	set(&l.MaxFirstMsgSize, d.MaxFirstMsgSize)
	set(&l.StreamBurst, d.StreamBurst)
	set(&l.RapidResets, d.RapidResets)
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = d.MaxConcurrentStreams
	}
	if l.MaxHeaderListSize == 0 {
		l.MaxHeaderListSize = d.MaxHeaderListSize
	}
	if l.StreamRate <= 0 {
		l.StreamRate = d.StreamRate
	}
	setD(&l.MaxStreamWait, d.MaxStreamWait)
	setD(&l.HandshakeTimeout, d.HandshakeTimeout)
	setD(&l.RapidResetWindow, d.RapidResetWindow)
	setD(&l.MinStreamLifetime, d.MinStreamLifetime)
	setD(&l.LingerTimeout, d.LingerTimeout)
	return l
}
