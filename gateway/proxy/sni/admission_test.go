package sni

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// refAdmission is admission written plainly: a slice of every connection in
// accept order, scanned at each step.
type refAdmission struct {
	max, perSource int
	conns          []*refConn
}

type refConn struct {
	addr                netip.Addr
	open, waiting, shed bool
}

func (r *refAdmission) admit(addr netip.Addr) (c, shed *refConn, why Result) {
	open, fromAddr := 0, 0
	for _, c := range r.conns {
		if c.open {
			open++
			if c.addr == addr {
				fromAddr++
			}
		}
	}
	oldest := func(match func(*refConn) bool) *refConn {
		for _, c := range r.conns {
			if c.open && c.waiting && match(c) {
				return c
			}
		}
		return nil
	}
	switch {
	case fromAddr >= r.perSource:
		if shed = oldest(func(c *refConn) bool { return c.addr == addr }); shed == nil {
			return nil, nil, RefusedSourceLimit
		}
		why = ShedSourceLimit
	case open >= r.max:
		if shed = oldest(func(*refConn) bool { return true }); shed == nil {
			return nil, nil, RefusedOverload
		}
		why = ShedOverload
	}
	if shed != nil {
		shed.open, shed.shed = false, true
	}
	c = &refConn{addr: addr, open: true, waiting: true}
	r.conns = append(r.conns, c)
	return c, shed, why
}

// TestAdmissionMatchesReference runs random accepts, hellos and closes
// through admission and refAdmission and wants the same decisions and the
// same counts after every step.
func TestAdmissionMatchesReference(t *testing.T) {
	addrs := []netip.Addr{
		netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"),
		netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("fd00::1"), {},
	}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 17))
		maxConns, perSource := 1+rng.IntN(12), 1+rng.IntN(6)
		a := newAdmission(maxConns, perSource)
		ref := &refAdmission{max: maxConns, perSource: perSource}
		var entries []*entry // entries[i] is ref.conns[i]
		for step := range 300 {
			switch op := rng.IntN(10); {
			case op < 5: // accept, mostly from the first address
				addr := addrs[min(rng.IntN(2*len(addrs)), len(addrs)-1)]
				e, shed, why := a.admit(nil, addr)
				rc, rshed, rwhy := ref.admit(addr)
				if (e == nil) != (rc == nil) || why != rwhy {
					t.Fatalf("seed %d step %d: admit from %v: admitted %v (%q), want %v (%q)", seed, step, addr, e != nil, why, rc != nil, rwhy)
				}
				if rshed != nil {
					i := indexOf(ref.conns, rshed)
					if shed != entries[i] {
						t.Fatalf("seed %d step %d: admit from %v shed another connection than the oldest hello-less (#%d)", seed, step, addr, i)
					}
				} else if shed != nil {
					t.Fatalf("seed %d step %d: shed with room left", seed, step)
				}
				if e != nil {
					entries = append(entries, e)
				}
			case op < 8 && len(entries) > 0: // a hello arrives (or fails)
				i := rng.IntN(len(entries))
				if got, want := a.helloDone(entries[i]), !ref.conns[i].shed; got != want {
					t.Fatalf("seed %d step %d: helloDone of #%d = %v, want %v", seed, step, i, got, want)
				}
				ref.conns[i].waiting = false
			case len(entries) > 0: // a connection ends
				i := rng.IntN(len(entries))
				a.release(entries[i])
				ref.conns[i].open = false
			}
			open, bySource, waiting := 0, map[netip.Addr]int{}, 0
			for _, c := range ref.conns {
				if c.open {
					open++
					bySource[c.addr]++
					if c.waiting {
						waiting++
					}
				}
			}
			if a.openConns() != open || a.waiting.Len() != waiting || len(a.sources) != len(bySource) {
				t.Fatalf("seed %d step %d: open %d, waiting %d, sources %d; want %d, %d, %d",
					seed, step, a.openConns(), a.waiting.Len(), len(a.sources), open, waiting, len(bySource))
			}
			for addr, n := range bySource {
				if s := a.sources[addr]; s == nil || s.open != n {
					t.Fatalf("seed %d step %d: source %v: %+v, want %d open", seed, step, addr, s, n)
				}
			}
		}
	}
}

func indexOf(conns []*refConn, c *refConn) int {
	for i, x := range conns {
		if x == c {
			return i
		}
	}
	return -1
}
