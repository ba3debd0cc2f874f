package sni

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/horizonmesh/horizon/internal/ratelog"
)

// Defaults of Options.
const (
	// DefaultHelloTimeout: an honest TLS client sends its ClientHello as
	// soon as it has connected, so it arrives within a round trip of the
	// accept; 2s leaves room for a slow path and one retransmission of a
	// lost segment, and bounds how long a silent socket holds a slot.
	DefaultHelloTimeout   = 2 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultMaxConns       = 4096
	// DefaultMaxConnsPerSource is a quarter of DefaultMaxConns: no one
	// address can take the gateway, and a remote network can still reach it
	// through a NAT of a few addresses. Pods of a network that is routed,
	// not NATed, connect from their own addresses, each with far fewer
	// connections than this.
	DefaultMaxConnsPerSource = 1024
	DefaultMaxAttempts       = 3
	DefaultDrainTimeout      = 30 * time.Second
)

// logEvery is how often a kind of refusal is logged (per source, for the
// per-source limit); metrics count every one.
const logEvery = 10 * time.Second

// Table maps a server name (lower case) to the addresses (host:port) of the
// endpoints that serve it, in the order round robin visits them.
type Table map[string][]string

// Dialer opens upstream connections; *net.Dialer is one.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Options configure a Proxy; zero values take the defaults.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// HelloTimeout bounds the time from accept to a whole ClientHello.
	HelloTimeout time.Duration
	// ConnectTimeout bounds each attempt to connect to an endpoint.
	ConnectTimeout time.Duration
	// MaxAttempts is how many endpoints a connection tries, each once, before
	// it is closed (at most the number of endpoints).
	MaxAttempts int
	// MaxConns caps connections open at once. Each holds at most two
	// goroutines and one ClientHello (MaxHelloLen). When MaxConns are open,
	// a new connection sheds the oldest one that has not sent its whole
	// ClientHello yet, or is closed on accept if all have.
	MaxConns int
	// MaxConnsPerSource caps the connections open at once from one remote
	// IP address, shedding and refusing as MaxConns does, among that
	// address's connections. Connections whose remote address is not IP
	// count as one source.
	MaxConnsPerSource int
	// DrainTimeout is how long Serve, once its context is done, lets open
	// connections finish before it closes them.
	DrainTimeout time.Duration
	// Dialer connects to endpoints (default: a *net.Dialer).
	Dialer Dialer
}

// Proxy forwards TLS connections, unterminated, to an endpoint chosen by the
// server name of their ClientHello.
type Proxy struct {
	opts   Options
	log    *slog.Logger
	rlog   *ratelog.Logger // for what clients can trigger
	routes atomic.Pointer[map[string]*route]
}

// route is one server name's endpoints and its round-robin position.
type route struct {
	addrs []string
	next  atomic.Uint64
}

// New returns a Proxy with an empty table: until SetTable, every connection is
// closed as unknown_sni.
func New(opts Options) *Proxy {
	if opts.HelloTimeout <= 0 {
		opts.HelloTimeout = DefaultHelloTimeout
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxConnsPerSource <= 0 {
		opts.MaxConnsPerSource = DefaultMaxConnsPerSource
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{}
	}
	p := &Proxy{opts: opts, log: opts.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.rlog = ratelog.New(p.log, logEvery)
	empty := map[string]*route{}
	p.routes.Store(&empty)
	return p
}

// SetTable replaces the routing table at once: connections accepted from now
// on use it; connections already routed are left alone. Names without
// endpoints are dropped. A name whose endpoints did not change keeps its
// round-robin position. The table is copied.
func (p *Proxy) SetTable(t Table) {
	old := *p.routes.Load()
	next := make(map[string]*route, len(t))
	endpoints := 0
	for name, addrs := range t {
		if len(addrs) == 0 {
			continue
		}
		r := &route{addrs: append([]string(nil), addrs...)}
		if o, ok := old[name]; ok && equal(o.addrs, r.addrs) {
			r.next.Store(o.next.Load())
		}
		next[name] = r
		endpoints += len(addrs)
	}
	p.routes.Store(&next)
	p.opts.Metrics.table(len(next), endpoints)
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Serve accepts connections on lis and forwards them until ctx is done,
// within MaxConns and MaxConnsPerSource (see admission). Then
// it closes lis, lets open connections finish for up to DrainTimeout, closes
// those left, and returns once every goroutine it started has ended. It
// returns nil after ctx is done, or the error that stopped Accept.
func (p *Proxy) Serve(ctx context.Context, lis net.Listener) error {
	// kill ends every connection; it fires when the drain times out.
	hard, kill := context.WithCancel(context.WithoutCancel(ctx))
	defer kill()
	stopClose := context.AfterFunc(ctx, func() { lis.Close() })
	defer stopClose()

	var (
		wg    sync.WaitGroup
		adm   = newAdmission(p.opts.MaxConns, p.opts.MaxConnsPerSource)
		err   error
		delay time.Duration
	)
	for {
		c, aerr := lis.Accept()
		if aerr != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(aerr, net.ErrClosed) {
				err = fmt.Errorf("accept: %w", aerr)
				break
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed; retrying", "error", aerr, "delay", delay)
			select {
			case <-time.After(delay):
				continue
			case <-ctx.Done():
			}
			break
		}
		delay = 0
		accepted := time.Now()
		addr := sourceOf(c)
		e, shed, r := adm.admit(c, addr)
		if shed != nil {
			p.opts.Metrics.result(r)
			p.logLimit(r, shed.addr, "connection shed: no ClientHello yet, and room was needed")
			reset(shed.conn)
		}
		if e == nil {
			p.opts.Metrics.result(r)
			p.logLimit(r, addr, "connection refused")
			reset(c)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.handle(hard, adm, e, accepted)
		}()
	}

	lis.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	open := adm.openConns()
	if open > 0 {
		p.log.Info("draining connections", "open", open, "timeout", p.opts.DrainTimeout)
	}
	timer := time.NewTimer(p.opts.DrainTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		p.log.Warn("drain timeout: closing open connections", "open", adm.openConns())
		kill()
		<-done
	}
	return err
}

// sourceOf is the address a connection counts against MaxConnsPerSource:
// its remote IP (an IPv4-mapped IPv6 address as IPv4), or the zero Addr.
func sourceOf(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// reset closes a connection the gateway refuses or sheds with a reset: the
// socket is freed now, with no TIME_WAIT here.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// logLimit logs a refusal or shed, at most once per logEvery per result and,
// for the per-source limit, per source.
func (p *Proxy) logLimit(r Result, source netip.Addr, msg string) {
	key := string(r)
	if r == RefusedSourceLimit || r == ShedSourceLimit {
		key += " " + source.String()
	}
	p.rlog.Warn(key, msg, "result", r, "source", source.String())
}

// handle owns one client connection from accept to close.
func (p *Proxy) handle(hard context.Context, adm *admission, e *entry, accepted time.Time) {
	client := e.conn
	m := p.opts.Metrics
	m.addActive(1)
	defer m.addActive(-1) // after release: a test sees the slot free
	defer adm.release(e)
	defer client.Close()
	stop := context.AfterFunc(hard, func() { client.Close() })
	defer stop()

	client.SetReadDeadline(accepted.Add(p.opts.HelloTimeout))
	name, hello, err := ReadClientHello(client)
	if !adm.helloDone(e) {
		return // shed while it read; counted when shed
	}
	if err != nil {
		r := classify(err, hello)
		m.result(r)
		p.log.Debug("connection refused", "result", r, "client", client.RemoteAddr().String(), "error", err)
		return
	}
	client.SetReadDeadline(time.Time{})

	rt := (*p.routes.Load())[name]
	if rt == nil {
		m.result(UnknownSNI)
		p.log.Debug("connection refused", "result", UnknownSNI, "client", client.RemoteAddr().String(), "sni", name)
		return
	}
	up, err := p.connect(hard, rt)
	if err != nil {
		m.result(UpstreamFailed)
		p.log.Warn("no endpoint accepted the connection", "sni", name, "error", err)
		return
	}
	defer up.Close()
	stopUp := context.AfterFunc(hard, func() { up.Close() })
	defer stopUp()
	m.result(Routed)
	p.log.Debug("connection routed", "sni", name, "client", client.RemoteAddr().String(), "upstream", up.RemoteAddr().String())

	if _, err := up.Write(hello); err != nil {
		return
	}
	p.pipe(client, up)
}

// classify turns a ReadClientHello error into a result.
func classify(err error, read []byte) Result {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return Timeout
	case errors.Is(err, ErrNotTLS), errors.Is(err, ErrMalformed), errors.Is(err, ErrTooLarge),
		errors.Is(err, ErrNoSNI), errors.Is(err, io.ErrUnexpectedEOF):
		return BadHello
	case len(read) > 0:
		return BadHello
	}
	return ClientClosed
}

// connect tries the route's endpoints in round-robin order, each once, up to
// MaxAttempts of them.
func (p *Proxy) connect(hard context.Context, rt *route) (net.Conn, error) {
	n := uint64(len(rt.addrs))
	start := rt.next.Add(1) - 1
	attempts := min(len(rt.addrs), p.opts.MaxAttempts)
	var errs []error
	for i := range uint64(attempts) {
		addr := rt.addrs[(start+i)%n]
		ctx, cancel := context.WithTimeout(hard, p.opts.ConnectTimeout)
		up, err := p.opts.Dialer.DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			return up, nil
		}
		p.opts.Metrics.connectFailed()
		p.log.Debug("endpoint connect failed", "endpoint", addr, "error", err)
		errs = append(errs, err)
		if hard.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// pipe copies both ways until both directions end. A direction that ends
// cleanly half-closes its destination, so the other may go on; one that fails
// closes both connections.
func (p *Proxy) pipe(client, up net.Conn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.copy(up, client, "to_upstream")
	}()
	p.copy(client, up, "to_client")
	wg.Wait()
}

func (p *Proxy) copy(dst, src net.Conn, direction string) {
	n, err := io.Copy(dst, src)
	p.opts.Metrics.copied(direction, n)
	if err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	dst.Close()
}
