package mcs

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/horizonmesh/horizon/discovery"
)

// DefaultCIDR is the IPv4 range ClusterSet IPs come from unless configured:
// the range Istio auto-allocates service IPs from.
const DefaultCIDR = "240.240.0.0/16"

// Allocator hands out ClusterSet IPs, one per configured IP family. It keeps
// the IPs it assigned in the last round, so that an assignment stays put
// while the members' caches have not yet shown the imports carrying it.
type Allocator struct {
	prefixes []netip.Prefix // at most one per family, IPv4 first

	mu     sync.Mutex
	recent map[discovery.ServiceKey][]netip.Addr
}

// NewAllocator returns an allocator for the given CIDRs (at most one IPv4
// and one IPv6); none means DefaultCIDR.
func NewAllocator(cidrs ...string) (*Allocator, error) {
	if len(cidrs) == 0 {
		cidrs = []string{DefaultCIDR}
	}
	a := &Allocator{}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("ClusterSet IP range %q: %w", s, err)
		}
		p = p.Masked()
		if hostBits(p) < 2 {
			return nil, fmt.Errorf("ClusterSet IP range %s: too small", p)
		}
		for _, q := range a.prefixes {
			if q.Addr().Is4() == p.Addr().Is4() {
				return nil, fmt.Errorf("ClusterSet IP ranges %s and %s: at most one per IP family", q, p)
			}
		}
		a.prefixes = append(a.prefixes, p)
	}
	slices.SortFunc(a.prefixes, func(x, y netip.Prefix) int {
		return cmp.Compare(x.Addr().BitLen(), y.Addr().BitLen())
	})
	return a, nil
}

// Prefixes returns the configured ranges, IPv4 first.
func (a *Allocator) Prefixes() []netip.Prefix { return slices.Clone(a.prefixes) }

func hostBits(p netip.Prefix) int { return p.Addr().BitLen() - p.Bits() }

// Assign gives every key one IP per family. A key keeps an IP that held
// lists for it (its managed imports' IPs; the most common one when members
// disagree), then one it was assigned in the last round; otherwise it gets the
// first free address from a hash of the key. IPs in reserved (every import's,
// whoever manages it) are never given to another key in this round. Keys are
// handled in sorted order, so equal input gives equal output. Problems list
// the keys that could not get an IP.
func (a *Allocator) Assign(keys []discovery.ServiceKey, held, reserved map[discovery.ServiceKey][]string) (map[discovery.ServiceKey][]string, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	keys = slices.Clone(keys)
	slices.SortFunc(keys, discovery.ServiceKey.Compare)
	keys = slices.Compact(keys)

	used := map[netip.Addr]discovery.ServiceKey{}
	got := make(map[discovery.ServiceKey][]netip.Addr, len(keys))
	take := func(k discovery.ServiceKey, ip netip.Addr) bool {
		if owner, ok := used[ip]; ok && owner != k {
			return false
		}
		used[ip] = k
		got[k] = append(got[k], ip)
		return true
	}
	family := func(p netip.Prefix, ips []netip.Addr) bool {
		for _, ip := range ips {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}

	// 1. IPs the imports already carry.
	for _, p := range a.prefixes {
		for _, k := range keys {
			for _, ip := range preferred(held[k], p) {
				if take(k, ip) {
					break
				}
			}
		}
	}
	// 2. Every other import's IPs stay reserved for this round.
	for k, ips := range reserved {
		for _, s := range ips {
			if ip, err := netip.ParseAddr(s); err == nil {
				if _, ok := used[ip]; !ok {
					used[ip] = k
				}
			}
		}
	}
	// 3. What this allocator assigned last round (the caches may not show
	// it yet), before any new address is handed out.
	for _, p := range a.prefixes {
		for _, k := range keys {
			if family(p, got[k]) {
				continue
			}
			for _, ip := range a.recent[k] {
				if p.Contains(ip) && take(k, ip) {
					break
				}
			}
		}
	}
	// 4. New addresses.
	var problems []string
	for _, p := range a.prefixes {
		for _, k := range keys {
			if family(p, got[k]) {
				continue
			}
			ip, ok := probe(p, k, used)
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: no free ClusterSet IP left in %s", k, p))
				continue
			}
			take(k, ip)
		}
	}

	a.recent = got
	out := make(map[discovery.ServiceKey][]string, len(got))
	for k, ips := range got {
		slices.SortFunc(ips, func(x, y netip.Addr) int { return cmp.Compare(x.BitLen(), y.BitLen()) })
		for _, ip := range ips {
			out[k] = append(out[k], ip.String())
		}
	}
	return out, problems
}

// preferred returns the addresses of ips inside p, the most common first,
// then in address order.
func preferred(ips []string, p netip.Prefix) []netip.Addr {
	count := map[netip.Addr]int{}
	for _, s := range ips {
		if ip, err := netip.ParseAddr(s); err == nil && p.Contains(ip) && usable(p, ip) {
			count[ip]++
		}
	}
	out := make([]netip.Addr, 0, len(count))
	for ip := range count {
		out = append(out, ip)
	}
	slices.SortFunc(out, func(x, y netip.Addr) int { return cmp.Or(cmp.Compare(count[y], count[x]), x.Compare(y)) })
	return out
}

// span is the number of usable offsets in p: all but the network address,
// and for IPv4 the broadcast address; at most 2^62.
func span(p netip.Prefix) uint64 {
	bits := min(hostBits(p), 62)
	n := uint64(1) << bits
	if p.Addr().Is4() {
		return n - 2
	}
	return n - 1
}

func usable(p netip.Prefix, ip netip.Addr) bool {
	off, ok := offsetOf(p, ip)
	return ok && off >= 1 && off <= span(p)
}

// probe walks p from the key's hash to the first address not in used.
func probe(p netip.Prefix, k discovery.ServiceKey, used map[netip.Addr]discovery.ServiceKey) (netip.Addr, bool) {
	sum := sha256.Sum256([]byte(k.Namespace + "/" + k.Name))
	n := span(p)
	start := binary.BigEndian.Uint64(sum[:8]) % n
	// More tries than addresses in use always finds a free one, if any.
	tries := min(n, uint64(len(used))+1)
	for i := range tries {
		ip := addOffset(p, 1+(start+i)%n)
		if _, taken := used[ip]; !taken {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// addOffset returns the address off hosts into p (off < 2^62).
func addOffset(p netip.Prefix, off uint64) netip.Addr {
	b := p.Addr().As16()
	lo := binary.BigEndian.Uint64(b[8:]) + off // host bits are zero: no carry
	binary.BigEndian.PutUint64(b[8:], lo)
	ip := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return ip.Unmap()
	}
	return ip
}

func offsetOf(p netip.Prefix, ip netip.Addr) (uint64, bool) {
	if !p.Contains(ip) {
		return 0, false
	}
	a, b := p.Addr().As16(), ip.As16()
	if hostBits(p) > 62 && binary.BigEndian.Uint64(b[:8]) != binary.BigEndian.Uint64(a[:8]) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[8:]) - binary.BigEndian.Uint64(a[8:]), true
}
