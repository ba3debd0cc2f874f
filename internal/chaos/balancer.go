package chaos

import (
	"io"
	"net"
	"sync"
)

// balancer is the Service in front of Horizon's replicas (F3 with two
// replicas): each new connection goes to the next replica, round robin, and
// to the one after if that does not accept it, as kube-proxy sends a new
// connection only to a ready endpoint. A killed replica's connections break
// with it; the proxies reconnect, through the balancer, to one that is up.
type balancer struct {
	ln      net.Listener
	targets []string

	mu    sync.Mutex
	next  int
	conns map[net.Conn]bool
}

func newBalancer(targets ...string) (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &balancer{ln: ln, targets: targets, conns: map[net.Conn]bool{}}
	go b.serve()
	return b, nil
}

func (b *balancer) Addr() string { return b.ln.Addr().String() }

// Close stops listening and closes every connection.
func (b *balancer) Close() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
	}
}

func (b *balancer) serve() {
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return
		}
		go b.forward(in)
	}
}

// dial connects to the next replica that accepts.
func (b *balancer) dial() (net.Conn, error) {
	b.mu.Lock()
	first := b.next
	b.next = (b.next + 1) % len(b.targets)
	b.mu.Unlock()
	var err error
	for i := range b.targets {
		var out net.Conn
		if out, err = net.Dial("tcp", b.targets[(first+i)%len(b.targets)]); err == nil {
			return out, nil
		}
	}
	return nil, err
}

func (b *balancer) forward(in net.Conn) {
	out, err := b.dial()
	if err != nil {
		in.Close()
		return
	}
	b.mu.Lock()
	b.conns[in], b.conns[out] = true, true
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.pipe(out, in); close(done) }()
	b.pipe(in, out)
	<-done
	b.mu.Lock()
	delete(b.conns, in)
	delete(b.conns, out)
	b.mu.Unlock()
}

// pipe copies src to dst; when either side ends, both are closed, so a
// replica's death reaches its proxies at once.
func (b *balancer) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}
