package connguard

import (
	"net"
	"sync"
)

// Listener returns lis bounded by MaxConns and MaxConnsPerSource: Accept
// closes a connection over either limit at once, counts and logs it, and
// waits for the next. A connection counts until it is closed.
//
// gRPC sets TCP_USER_TIMEOUT (its keepalive timeout) only on a *net.TCPConn,
// so not on the connections Listener returns; its keepalive pings still
// close a dead peer's connection.
func (g *Guard) Listener(lis net.Listener) net.Listener {
	return &listener{Listener: lis, g: g}
}

type listener struct {
	net.Listener
	g *Guard
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c.RemoteAddr())
		if reason := l.g.conns.acquire(src); reason != "" {
			key := reason
			if reason == ReasonMaxConnsPerSource {
				key += "|" + src
			}
			l.g.log.Warn(key, "connection refused: too many connections", "port", l.g.port, "peer", c.RemoteAddr().String(), "reason", reason)
			l.g.metrics.refused(l.g.port, reason)
			c.Close()
			continue
		}
		l.g.metrics.connections(l.g.port, 1)
		return &conn{Conn: c, g: l.g, source: src}, nil
	}
}

// conn is an accepted connection: it holds its place in the counts until
// closed.
type conn struct {
	net.Conn
	g      *Guard
	source string
	once   sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.g.conns.release(c.source)
		c.g.metrics.connections(c.g.port, -1)
	})
	return c.Conn.Close()
}

// CloseWrite half-closes a TCP connection: the GOAWAY of an abusive one is
// followed by end of stream.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// connCounts are a port's open connections, in all and per source.
type connCounts struct {
	max, perSource int

	mu       sync.Mutex
	total    int
	bySource map[string]int // sources with open connections only: at most max keys
}

// acquire counts a new connection from source, or returns why it may not
// be opened.
func (cc *connCounts) acquire(source string) string {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	switch {
	case cc.total >= cc.max:
		return ReasonMaxConns
	case cc.bySource[source] >= cc.perSource:
		return ReasonMaxConnsPerSource
	}
	cc.total++
	cc.bySource[source]++
	return ""
}

func (cc *connCounts) release(source string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.total--
	if cc.bySource[source]--; cc.bySource[source] <= 0 {
		delete(cc.bySource, source)
	}
}

// sourceOf is the IP address of a remote address, or the whole address if
// it has none.
func sourceOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	s := a.String()
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}
