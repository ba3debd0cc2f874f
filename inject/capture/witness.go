package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (and IP6T_SO_ORIGINAL_DST, the same
// number at SOL_IPV6): the destination of a connection before nat
// redirected it, from conntrack.
const soOriginalDst = 80

// OriginalDst is where a redirected (accepted) TCP connection was going.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: %T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	local, _ := c.LocalAddr().(*net.TCPAddr)
	v6 := local != nil && local.IP.To4() == nil
	var dst netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		if v6 {
			// A sockaddr_in6 fits IPv6MTUInfo's first field.
			var info *unix.IPv6MTUInfo
			if info, serr = unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, soOriginalDst); serr == nil {
				var port [2]byte // the field holds the port in network order
				binary.NativeEndian.PutUint16(port[:], info.Addr.Port)
				dst = netip.AddrPortFrom(netip.AddrFrom16(info.Addr.Addr).Unmap(), binary.BigEndian.Uint16(port[:]))
			}
			return
		}
		// A sockaddr_in (family, port, address) fits IPv6Mreq's 20 bytes.
		var mreq *unix.IPv6Mreq
		if mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, soOriginalDst); serr == nil {
			b := mreq.Multiaddr
			dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination (SO_ORIGINAL_DST): %w", err)
	}
	return dst, nil
}

// Listener is one port a Witness listens on, by name (outbound, inbound, or
// any other).
type Listener struct {
	Name    string
	Address string // host:port
}

// Witness accepts connections on every listener until ctx ends and writes
// one line per connection to w:
//
//	witness NAME orig=ORIGINAL-DESTINATION local=LOCAL from=REMOTE
//
// ORIGINAL-DESTINATION is "-" when conntrack knows none. Each connection
// is closed after its line is written. ready, if not nil, is called with
// the listening addresses once all listen.
func Witness(ctx context.Context, w io.Writer, listeners []Listener, ready func([]net.Addr)) error {
	var mu sync.Mutex // w
	var lis []net.Listener
	defer func() {
		for _, l := range lis {
			l.Close()
		}
	}()
	var addrs []net.Addr
	for _, l := range listeners {
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			return fmt.Errorf("witness %s: %w", l.Name, err)
		}
		lis = append(lis, ln)
		addrs = append(addrs, ln.Addr())
	}
	if ready != nil {
		ready(addrs)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(lis))
	for i, ln := range lis {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					if ctx.Err() == nil {
						errs[i] = fmt.Errorf("witness %s: %w", listeners[i].Name, err)
					}
					return
				}
				orig := "-"
				if d, err := OriginalDst(c); err == nil {
					orig = d.String()
				}
				mu.Lock()
				fmt.Fprintf(w, "witness %s orig=%s local=%s from=%s\n", listeners[i].Name, orig, c.LocalAddr(), c.RemoteAddr())
				mu.Unlock()
				c.Close()
			}
		})
	}
	<-ctx.Done()
	for _, l := range lis {
		l.Close()
	}
	wg.Wait()
	return errors.Join(errs...)
}
