package server

import "slices"

// subscription is what a stream asks for of one type: every resource
// (wildcard), and/or the resources of an interned set of names. It is
// immutable; a stream replaces it when the client changes what it asks
// for, and the publishing goroutine reads it to decide whom to wake.
type subscription struct {
	wildcard bool
	names    *nameSet
}

func (s *subscription) covers(n string) bool { return s.wildcard || s.names.has(n) }

// held is one resource as a client holds it: at a version, or not at all.
type held struct {
	version string
	ok      bool
}

// clientState is what a client holds of one type, as a published state and
// its exceptions: a resource the subscription covers is held at its
// version in base, unless over says otherwise (over also holds what the
// client has that the subscription does not cover). In the common case, a
// client that received base whole, over is empty: a stream keeps no
// per-resource state, however many resources its view has.
//
// over is not empty while a client has not been sent all of base (a split
// response in progress), after a subscription change until the next
// response, on a reconnect (delta initial_resource_versions), and for
// state-of-the-world resources that were removed but not sent as such.
type clientState struct {
	base *typeState // nil: an empty state
	over map[string]held
}

// known returns what the client holds of n under subscription sub.
func (c *clientState) known(sub *subscription, n string) held {
	if h, ok := c.over[n]; ok {
		return h
	}
	return baseHeld(c.base, sub, n)
}

// baseHeld is what a client holding base exactly holds of n under sub.
func baseHeld(base *typeState, sub *subscription, n string) held {
	if base == nil || !sub.covers(n) {
		return held{}
	}
	if e := base.entries[n]; e != nil {
		return held{e.version, true}
	}
	return held{}
}

// set records that the client holds h of n, given that it holds exactly
// base (under sub) otherwise.
func (c *clientState) set(sub *subscription, n string, h held) {
	if h == baseHeld(c.base, sub, n) {
		delete(c.over, n)
		if len(c.over) == 0 {
			c.over = nil // a map keeps its buckets
		}
		return
	}
	if c.over == nil {
		c.over = map[string]held{}
	}
	c.over[n] = h
}

// sentPart moves the client's state onto cur after a response that carried
// only part of what it was owed (the byte budget): it holds the sent names
// (sorted) at cur's versions, none of the gone ones (sorted), and what it
// held before of the rest.
func (c *clientState) sentPart(sub *subscription, cur *typeState, candidates, sent, gone []string) {
	c.rebase(sub, cur, candidates, func(n string, h held) held {
		if _, ok := slices.BinarySearch(sent, n); ok {
			return held{cur.entries[n].version, true}
		}
		if _, ok := slices.BinarySearch(gone, n); ok {
			return held{}
		}
		return h
	})
}

// rebase moves the client's state onto cur: afterwards base is cur and
// over holds the names the client holds otherwise. candidates must include
// every name where the client differs from cur; final (nil: none) says
// what the client holds of each of them afterwards, given what it held.
// Only the exceptions that remain are allocated.
func (c *clientState) rebase(sub *subscription, cur *typeState, candidates []string, final func(n string, h held) held) {
	if c.base == cur && final == nil {
		return
	}
	next := clientState{base: cur}
	for n, h := range c.over {
		if final != nil {
			h = final(n, h)
		}
		next.set(sub, n, h)
	}
	for _, n := range candidates {
		if _, done := c.over[n]; !done {
			h := baseHeld(c.base, sub, n)
			if final != nil {
				h = final(n, h)
			}
			next.set(sub, n, h)
		}
	}
	*c = next
}

// candidates lists the names where a client in state c may differ from cur
// under sub: those whose entry differs between base and cur (covered by
// sub), and the exceptions. Every other name is held at cur's version if
// sub covers it and cur has it, and not held otherwise.
func (c *clientState) candidates(sub *subscription, cur *typeState) []string {
	var out []string
	if c.base != cur {
		d := cur.diffFrom(c.base).names
		if !sub.wildcard && sub.names.len() < len(d) {
			// Fewer names subscribed than changed: a name not subscribed
			// is not covered and, unless an exception, not held.
			d = nil
			if sub.names != nil {
				d = sub.names.names
			}
		}
		for _, n := range d {
			if _, ok := c.over[n]; !ok && sub.covers(n) {
				out = append(out, n)
			}
		}
	}
	for n := range c.over {
		out = append(out, n)
	}
	return out
}

// owed compares what the client holds with cur: the names it lacks or
// holds at another version (changed), and those it holds that cur does not
// have for it (gone), each sorted; and the candidates compared. The
// slices may be shared: callers do not modify them.
func (c *clientState) owed(sub *subscription, cur *typeState) (changed, gone, candidates []string) {
	if c.base == nil && len(c.over) == 0 {
		// A client that holds nothing (a first request) lacks every
		// resource its subscription covers: shared, not computed per stream.
		present, _ := presentNames(sub, cur)
		return present, nil, present
	}
	candidates = c.candidates(sub, cur)
	for _, n := range candidates {
		k := c.known(sub, n)
		e := cur.entries[n]
		want := e != nil && sub.covers(n)
		switch {
		case want && (!k.ok || k.version != e.version):
			changed = append(changed, n)
		case !want && k.ok:
			gone = append(gone, n)
		}
	}
	if len(c.over) > 0 {
		slices.Sort(changed)
		slices.Sort(gone)
	}
	return changed, gone, candidates
}

// resubscribe replaces the subscription from with to, the client's state
// changing with it: known gives what the client holds of each name under
// to (the protocols differ), for the names whose coverage changes, the
// exceptions, and extra.
func (c *clientState) resubscribe(from, to *subscription, known func(n string) held, extra []string) {
	names := coverageChanges(from, to, c.base)
	names = append(names, extra...)
	for n := range c.over {
		names = append(names, n)
	}
	after := make(map[string]held, len(names))
	for _, n := range names {
		after[n] = known(n)
	}
	for n, h := range after {
		c.set(to, n, h)
	}
}

// coverageChanges lists the names of base whose coverage differs between
// two subscriptions (a name base does not hold is not held either way).
func coverageChanges(from, to *subscription, base *typeState) []string {
	if base == nil {
		return nil
	}
	if from.wildcard != to.wildcard {
		var out []string
		for _, n := range base.names {
			if from.covers(n) != to.covers(n) {
				out = append(out, n)
			}
		}
		return out
	}
	if from.wildcard || from.names == to.names {
		return nil
	}
	var a, b []string
	if from.names != nil {
		a = from.names.names
	}
	if to.names != nil {
		b = to.names.names
	}
	var out []string
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || (len(a) > 0 && a[0] < b[0]):
			out, a = appendIfIn(out, base, a[0]), a[1:]
		case len(a) == 0 || b[0] < a[0]:
			out, b = appendIfIn(out, base, b[0]), b[1:]
		default:
			a, b = a[1:], b[1:]
		}
	}
	return out
}

func appendIfIn(out []string, ts *typeState, n string) []string {
	if _, ok := ts.entries[n]; ok {
		return append(out, n)
	}
	return out
}

// snapshot returns the client's state as a map (name -> version): for a
// split response's version, and tests.
func (c *clientState) snapshot(sub *subscription) map[string]string {
	out := map[string]string{}
	if c.base != nil {
		for _, n := range c.base.names {
			if sub.covers(n) {
				out[n] = c.base.entries[n].version
			}
		}
	}
	for n, h := range c.over {
		if h.ok {
			out[n] = h.version
		} else {
			delete(out, n)
		}
	}
	return out
}
