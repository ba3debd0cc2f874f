package connguard

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/mem"
)

// h2Conn is the connection gRPC speaks HTTP/2 on: what the port's
// credentials returned (the TLS connection, or the TCP one in plaintext).
// It follows the frames both ways with two frameScanners, finds abusive
// clients (the package doc's "Rapid reset"), and puts a GOAWAY between two
// of the server's frames. Only gRPC's reader goroutine calls Read; writes
// come from gRPC's writer goroutine, and are serialized with the GOAWAY by
// wmu.
type h2Conn struct {
	net.Conn          // HTTP/2 in clear
	raw      net.Conn // the accepted connection under Conn (Conn itself in plaintext)
	// rawRead reads Conn when it is ready (ReadOnReady), if it is a bare
	// TCP connection.
	rawRead func(int, mem.BufferPool) (*[]byte, int, error)
	g       *Guard
	source  string // remote IP, for the log

	// The reader's own.
	in          frameScanner
	windowStart time.Time // of the current RapidResetWindow
	early       int       // early resets and streams past the limit in it

	maxStream atomic.Uint32 // highest client stream handed to gRPC: the GOAWAY's last stream
	abusive   atomic.Bool   // Read hands gRPC nothing more

	smu  sync.Mutex
	open map[uint32]time.Time // client streams the server has not ended, and when they opened

	wmu      sync.Mutex
	out      frameScanner
	pending  bool          // a GOAWAY waits for the end of the server's current frame
	wdone    bool          // nothing more is written: the GOAWAY is out, or writing failed
	goneAway chan struct{} // closed when wdone is set

	cmu       sync.Mutex
	isClosed  bool
	fallback  *time.Timer // gives up on a GOAWAY that finds no frame boundary
	closed    chan struct{}
	closeOnce sync.Once
}

func newH2Conn(g *Guard, conn, raw net.Conn) *h2Conn {
	return &h2Conn{
		Conn: conn, raw: raw, g: g, source: sourceOf(raw.RemoteAddr()),
		in:       frameScanner{preface: clientPrefaceLen},
		open:     map[uint32]time.Time{},
		goneAway: make(chan struct{}),
		closed:   make(chan struct{}),
		rawRead:  readyReader(conn),
	}
}

// Read hands gRPC the client's bytes as they come, and follows their
// frames. When a frame makes the connection abusive, gRPC gets the bytes
// before that frame only, and then no more: Read waits for the GOAWAY to be
// written, reads and drops what the client still sends until it closes or
// LingerTimeout passes, and closes the connection.
func (c *h2Conn) Read(p []byte) (int, error) {
	if c.abusive.Load() {
		c.linger()
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if cut := c.scanIn(p[:n]); cut >= 0 {
			c.goAway()
			if cut == 0 {
				c.linger()
				return 0, net.ErrClosed
			}
			return cut, nil
		}
	}
	return n, err
}

// scanIn follows the client's frames in p. It returns -1, or, if a frame
// made the connection abusive, the offset in p where that frame begins.
func (c *h2Conn) scanIn(p []byte) int {
	var now time.Time
	clock := func() time.Time {
		if now.IsZero() {
			now = c.g.clock.Now()
		}
		return now
	}
	l := &c.g.limits
	for off := 0; off < len(p); {
		start := off - c.in.hdrN // where a header completed by this step began
		n, h, ok := c.in.advance(p[off:])
		off += n
		if !ok {
			continue
		}
		switch h.typ {
		case frameHeaders:
			if h.stream%2 == 0 || h.stream <= c.maxStream.Load() {
				continue // trailers, or a protocol error that gRPC answers
			}
			c.smu.Lock()
			over := len(c.open) >= int(l.MaxConcurrentStreams)
			c.smu.Unlock()
			if over && c.earlyReset(clock()) {
				return max(start, 0)
			}
			c.smu.Lock()
			c.open[h.stream] = clock()
			c.smu.Unlock()
			c.maxStream.Store(h.stream)
		case frameRSTStream:
			c.smu.Lock()
			opened, ok := c.open[h.stream]
			delete(c.open, h.stream)
			c.smu.Unlock()
			if ok && clock().Sub(opened) < l.MinStreamLifetime && c.earlyReset(clock()) {
				return max(start, 0)
			}
		}
	}
	return -1
}

// earlyReset counts an early reset, or a stream past the limit, and says
// whether the connection has made more than RapidResets in this window.
func (c *h2Conn) earlyReset(now time.Time) bool {
	if now.Sub(c.windowStart) >= c.g.limits.RapidResetWindow {
		c.windowStart, c.early = now, 0
	}
	c.early++
	return c.early > c.g.limits.RapidResets
}

// goAway marks the connection abusive, counts and logs it, and writes the
// GOAWAY now if the server is between frames; otherwise the next Write puts
// it at the end of the current frame. A write that blocks (a client that
// does not read) fails after LingerTimeout, and so does the wait for a
// boundary.
func (c *h2Conn) goAway() {
	c.abusive.Store(true)
	c.g.metrics.refused(c.g.port, ReasonRapidReset)
	c.g.log.Warn(ReasonRapidReset+"|"+c.source, "connection sent GOAWAY and closed: too many streams reset early",
		"port", c.g.port, "peer", c.raw.RemoteAddr().String(), "reason", ReasonRapidReset,
		"early_resets", c.early, "window", c.g.limits.RapidResetWindow)
	linger := c.g.limits.LingerTimeout
	_ = c.Conn.SetWriteDeadline(time.Now().Add(linger))
	c.cmu.Lock()
	if !c.isClosed {
		c.fallback = time.AfterFunc(linger, c.giveUp)
	}
	c.cmu.Unlock()

	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wdone {
		return
	}
	c.pending = true
	if c.out.atBoundary() {
		c.sendGoAwayLocked()
	}
}

// giveUp ends writing when no frame boundary came within LingerTimeout.
func (c *h2Conn) giveUp() {
	c.wmu.Lock()
	c.finishLocked()
	c.wmu.Unlock()
	c.Close()
}

// Write writes the server's bytes and follows their frames. With a GOAWAY
// pending, it writes up to the end of the current frame, then the GOAWAY,
// and drops the rest: gRPC's writer sees the connection closed.
func (c *h2Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wdone {
		return 0, net.ErrClosed
	}
	end := len(p)
	if c.pending {
		if b := c.out.boundaryIn(p); b >= 0 {
			end = b
		}
	}
	// Streams the server ends are forgotten before the client can see that
	// they ended, so that its reset of one is never taken for early.
	c.scanOut(p[:end])
	n, err := c.Conn.Write(p[:end])
	if err != nil {
		c.finishLocked()
		return n, err
	}
	if c.pending && c.out.atBoundary() {
		c.sendGoAwayLocked()
		if end < len(p) {
			return end, net.ErrClosed
		}
	}
	return n, nil
}

// scanOut follows the server's frames in p and forgets the streams it ends.
func (c *h2Conn) scanOut(p []byte) {
	for off := 0; off < len(p); {
		n, h, ok := c.out.advance(p[off:])
		off += n
		if !ok {
			continue
		}
		ends := h.typ == frameRSTStream ||
			(h.typ == frameHeaders || h.typ == frameData) && h.flags&flagEndStream != 0
		if ends {
			c.smu.Lock()
			delete(c.open, h.stream)
			c.smu.Unlock()
		}
	}
}

// sendGoAwayLocked writes the GOAWAY and half-closes the connection: the
// client reads the frame, then end of stream. Called with wmu, at a frame
// boundary.
func (c *h2Conn) sendGoAwayLocked() {
	c.pending = false
	frame := goAwayFrame(c.maxStream.Load(), errCodeEnhanceYourCalm, ReasonRapidReset)
	if _, err := c.Conn.Write(frame); err == nil {
		if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	c.finishLocked()
}

func (c *h2Conn) finishLocked() {
	if !c.wdone {
		c.wdone = true
		close(c.goneAway)
	}
}

// linger waits until writing is over, then drops what the client still
// sends, until it closes or LingerTimeout passes (so that closing with
// unread bytes does not reset the connection before the client has read
// the GOAWAY), and closes the connection.
func (c *h2Conn) linger() {
	select {
	case <-c.goneAway:
	case <-c.closed:
	}
	_ = c.raw.SetReadDeadline(time.Now().Add(c.g.limits.LingerTimeout))
	var buf [4096]byte
	for {
		if _, err := c.raw.Read(buf[:]); err != nil {
			break
		}
	}
	c.Close()
}

// Close closes the connection; a second Close does nothing.
func (c *h2Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.cmu.Lock()
		c.isClosed = true
		if c.fallback != nil {
			c.fallback.Stop()
		}
		c.cmu.Unlock()
		close(c.closed)
		err = c.Conn.Close()
	})
	return err
}
