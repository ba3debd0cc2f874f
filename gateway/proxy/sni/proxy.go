package sni

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultHelloTimeout   = 5 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultMaxConns       = 4096
	DefaultMaxAttempts    = 3
	DefaultDrainTimeout   = 30 * time.Second
)

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
	// MaxConns caps connections open at once; more are closed on accept.
	// Each holds at most two goroutines and one ClientHello (MaxHelloLen).
	MaxConns int
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

// Serve accepts connections on lis and forwards them until ctx is done. Then
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
		slots = make(chan struct{}, p.opts.MaxConns)
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
		select {
		case slots <- struct{}{}:
		default:
			p.opts.Metrics.result(RefusedOverload)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // reset: free the socket now, no TIME_WAIT here
			}
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			p.handle(hard, c)
		}()
	}

	lis.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	open := len(slots)
	if open > 0 {
		p.log.Info("draining connections", "open", open, "timeout", p.opts.DrainTimeout)
	}
	timer := time.NewTimer(p.opts.DrainTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		p.log.Warn("drain timeout: closing open connections", "open", len(slots))
		kill()
		<-done
	}
	return err
}

// handle owns one client connection from accept to close.
func (p *Proxy) handle(hard context.Context, client net.Conn) {
	m := p.opts.Metrics
	m.addActive(1)
	defer m.addActive(-1)
	defer client.Close()
	stop := context.AfterFunc(hard, func() { client.Close() })
	defer stop()

	client.SetReadDeadline(time.Now().Add(p.opts.HelloTimeout))
	name, hello, err := ReadClientHello(client)
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
