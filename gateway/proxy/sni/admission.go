package sni

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
)

// admission decides, at accept, whether a connection may open, and makes
// room for it by shedding connections that have not sent their whole
// ClientHello yet (hello-less ones), oldest first, before it refuses it:
//
//   - from a source address with perSource connections open, it sheds that
//     source's oldest hello-less connection (shed_source_limit); if the
//     source has none, it is refused (refused_source_limit);
//   - otherwise, with max connections open, it sheds the oldest hello-less
//     connection of any source (shed_overload); if there is none, it is
//     refused (refused_overload).
//
// A connection that has sent its hello is never shed. So idle sockets cannot
// keep an honest client out: a hello-less connection survives until max new
// connections have arrived after it (perSource from its own source), and an
// honest client sends its hello right after connect. Hello-less connections
// are kept in accept order, all together and per source, so every step is
// O(1). Methods are safe for concurrent use.
type admission struct {
	max, perSource int

	mu      sync.Mutex
	open    int
	sources map[netip.Addr]*source
	waiting list.List // of *entry: the hello-less, oldest first
}

// source is the connections open from one address.
type source struct {
	open    int
	waiting list.List // of *entry: the source's hello-less, oldest first
}

// entry is one admitted connection.
type entry struct {
	conn net.Conn
	addr netip.Addr
	src  *source
	// all and own are the entry's elements in the waiting lists, nil once
	// its hello is read or it left.
	all, own *list.Element
	gone     bool // released or shed: its slot is free
	shed     bool
}

func newAdmission(max, perSource int) *admission {
	return &admission{max: max, perSource: perSource, sources: map[netip.Addr]*source{}}
}

// admit admits conn from addr, hello-less, unless it is refused. It returns
// the connection's entry, and the entry it shed to make room (nil if none)
// with the result to count for it; the caller closes that connection. A
// refused connection gets a nil entry and the reason it was refused.
func (a *admission) admit(conn net.Conn, addr netip.Addr) (e, shed *entry, r Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.sources[addr]; s != nil && s.open >= a.perSource {
		if s.waiting.Len() == 0 {
			return nil, nil, RefusedSourceLimit
		}
		shed, r = s.waiting.Front().Value.(*entry), ShedSourceLimit
	} else if a.open >= a.max {
		if a.waiting.Len() == 0 {
			return nil, nil, RefusedOverload
		}
		shed, r = a.waiting.Front().Value.(*entry), ShedOverload
	}
	if shed != nil {
		shed.shed = true
		a.remove(shed)
	}
	s := a.sources[addr]
	if s == nil {
		s = &source{}
		a.sources[addr] = s
	}
	e = &entry{conn: conn, addr: addr, src: s}
	e.all, e.own = a.waiting.PushBack(e), s.waiting.PushBack(e)
	s.open++
	a.open++
	return e, shed, r
}

// helloDone takes e out of the hello-less, once its hello is read (or its
// reading failed): it can no longer be shed. It reports false if e was shed
// first; then the connection is closed, and its result counted.
func (a *admission) helloDone(e *entry) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e.shed {
		return false
	}
	a.unwait(e)
	return true
}

// release frees e's slot once its connection is closed; again, or after e
// was shed, it does nothing.
func (a *admission) release(e *entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.remove(e)
}

// openConns is the number of connections holding a slot.
func (a *admission) openConns() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.open
}

// remove frees e's slot. Called with mu held.
func (a *admission) remove(e *entry) {
	if e.gone {
		return
	}
	a.unwait(e)
	e.gone = true
	e.src.open--
	a.open--
	if e.src.open == 0 {
		delete(a.sources, e.addr)
	}
}

// unwait takes e out of the waiting lists. Called with mu held.
func (a *admission) unwait(e *entry) {
	if e.all == nil {
		return
	}
	a.waiting.Remove(e.all)
	e.src.waiting.Remove(e.own)
	e.all, e.own = nil, nil
}
