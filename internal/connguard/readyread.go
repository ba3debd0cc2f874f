package connguard

import (
	"io"
	"net"
	"syscall"

	"google.golang.org/grpc/mem"
)

// ReadOnReady is grpc-go's optional readyreader.Reader: gRPC reads through
// it into a pooled buffer taken only once bytes are ready, so that an idle
// connection pins no read buffer. grpc-go does this itself for a bare
// *net.TCPConn only; without this method a guarded plaintext connection
// would hold a 32 KiB bufio buffer for its whole life (bench: +32 KiB per
// idle connection). On a TLS connection (no raw descriptor to wait on) it
// reads as Read does, into a pooled buffer. The bytes read are followed
// exactly as Read follows them.
func (c *h2Conn) ReadOnReady(size int, pool mem.BufferPool) (*[]byte, int, error) {
	if c.abusive.Load() {
		c.linger()
		return nil, 0, net.ErrClosed
	}
	var (
		buf *[]byte
		n   int
		err error
	)
	if c.rawRead != nil {
		buf, n, err = c.rawRead(size, pool)
	} else {
		buf = pool.Get(size)
		n, err = c.Conn.Read(*buf)
	}
	if n > 0 {
		if cut := c.scanIn((*buf)[:n]); cut >= 0 {
			c.goAway()
			if cut == 0 {
				pool.Put(buf)
				c.linger()
				return nil, 0, net.ErrClosed
			}
			return buf, cut, nil
		}
		return buf, n, err
	}
	if buf != nil {
		pool.Put(buf)
	}
	return nil, 0, err
}

// readyReader returns how to read conn when it is ready, if it is a bare
// TCP connection (plaintext): wait for readiness, then take a buffer and
// read the descriptor without blocking, as grpc-go does.
func readyReader(nc net.Conn) func(int, mem.BufferPool) (*[]byte, int, error) {
	if c, ok := nc.(*conn); ok {
		nc = c.Conn // the listener's, counted: its descriptor is the TCP one
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return func(size int, pool mem.BufferPool) (*[]byte, int, error) {
		var (
			buf  *[]byte
			n    int
			rerr error
		)
		err := raw.Read(func(fd uintptr) bool {
			buf = pool.Get(size)
			n, rerr = syscall.Read(int(fd), *buf)
			if rerr != nil {
				pool.Put(buf)
				buf, n = nil, 0
				return rerr != syscall.EAGAIN && rerr != syscall.EWOULDBLOCK
			}
			return true
		})
		switch {
		case err != nil:
			return nil, 0, err // closed, or a deadline
		case rerr != nil:
			return nil, 0, &net.OpError{Op: "read", Net: "tcp", Source: tc.LocalAddr(), Addr: tc.RemoteAddr(), Err: rerr}
		case n == 0:
			pool.Put(buf)
			return nil, 0, io.EOF
		}
		return buf, n, nil
	}
}
