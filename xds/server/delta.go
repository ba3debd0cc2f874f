package server

import (
	"maps"
	"slices"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/horizonmesh/horizon/xds"
)

// deltaRequest applies an incremental request to type i. Every request
// arms the type (the protocol has no stale requests: a nonce only says
// which response an ACK or NACK is about).
func (st *adsStream) deltaRequest(i int, r *request) error {
	t := st.types[i]
	if t == nil {
		if len(r.initial) > MaxSubscribedNames {
			return st.tooManyNames(r.typeURL, len(r.initial))
		}
		// A reconnecting client says what it holds; a first request
		// without names is a wildcard one, until the client names a
		// resource (legacy wildcard).
		t = &typeStream{legacy: true}
		for n, v := range r.initial {
			t.state.set(&subscription{}, n, held{v, true})
		}
		st.types[i] = t
		st.setSubscription(i, &subscription{wildcard: len(r.subscribe) == 0})
	}
	if err := st.deltaSubscribe(i, t, r.subscribe, r.unsubscribe); err != nil {
		return err
	}
	t.armed = true
	// Envoy waits for the first answer to a wildcard subscription, even an
	// empty one, before it finishes initialising.
	t.force = st.subs[i].Load().wildcard && r.nonce == ""
	return nil
}

// deltaSubscribe applies the names a request subscribes to and
// unsubscribes from ("*": the wildcard). The client keeps what it holds,
// but for the names it unsubscribes from: those it no longer holds, unless
// the wildcard still covers them, and then it is owed them again (or their
// removal).
func (st *adsStream) deltaSubscribe(i int, t *typeStream, subscribe, unsubscribe []string) error {
	if t.legacy {
		if len(subscribe) == 0 {
			return nil
		}
		t.legacy = false
	}
	if len(subscribe) == 0 && len(unsubscribe) == 0 {
		return nil
	}
	from := st.subs[i].Load()
	wildcard := from.wildcard
	set := map[string]struct{}{}
	if from.names != nil {
		set = maps.Clone(from.names.set)
	}
	for _, n := range subscribe {
		if n == explicitWildcard {
			wildcard = true
			continue
		}
		set[n] = struct{}{}
	}
	changes := map[string]held{}
	for _, n := range unsubscribe {
		if n == explicitWildcard {
			wildcard = false
			continue
		}
		if _, ok := set[n]; ok && wildcard {
			changes[n] = held{"", true} // owed again: sent or removed
		} else {
			changes[n] = held{}
		}
		delete(set, n)
	}
	if len(set) > MaxSubscribedNames {
		return st.tooManyNames(xds.TypeURLs[i], len(set))
	}
	to := &subscription{wildcard: wildcard, names: st.srv.names.get(slices.Collect(maps.Keys(set)))}
	t.state.resubscribe(from, to, func(n string) held {
		if h, ok := changes[n]; ok {
			return h
		}
		return t.state.known(from, n)
	}, slices.Collect(maps.Keys(changes)))
	st.setSubscription(i, to)
	return nil
}

// deltaRespond sends what an armed incremental type is owed, if anything:
// the resources the client lacks or holds at another version (within the
// byte budget, at least one: its next request gets the rest), and the
// names it holds that are gone or no longer subscribed to. A wildcard
// type's first request is answered even if there is nothing.
func (st *adsStream) deltaRespond(t *typeStream, typeURL string, sub *subscription, cur *typeState) error {
	r := deltaCompute(t, sub, cur, st.srv.cache.maxResponseBytes)
	if r == nil {
		// Nothing owed: whatever a split left for later has been sent or
		// is no longer owed (a NACKed part counts as held), so the types
		// after this one wait no longer (flush).
		t.split = false
		return nil
	}
	nonce := st.nextNonce()
	resp := &deltaResponse{
		head:    &discoverypb.DeltaDiscoveryResponse{SystemVersionInfo: cur.version, RemovedResources: r.removed, TypeUrl: typeURL, Nonce: nonce},
		entries: r.entries,
	}
	bytes := 0
	for _, e := range r.entries {
		bytes += len(e.any.GetValue())
	}
	st.srv.onResponse(st.key, typeURL, nonce, cur.version, bytes)
	st.oversize(typeURL, r.bytes, len(r.entries))
	t.armed, t.force, t.nonce, t.split = false, false, nonce, r.split
	return st.ss.SendMsg(resp)
}

// deltaResult is an incremental response's content.
type deltaResult struct {
	entries []*entry
	removed []string
	bytes   int  // of the resources, as encoded in the response
	split   bool // the budget left some of what is owed for later
}

// deltaCompute computes what an armed type is owed (nil: nothing), and
// records that the client holds it once sent. budget (0: none) bounds the
// bytes of a response's resources, but for the first.
func deltaCompute(t *typeStream, sub *subscription, cur *typeState, budget int) *deltaResult {
	changed, gone, candidates := t.state.owed(sub, cur)
	if !t.force && len(changed) == 0 && len(gone) == 0 {
		t.state.rebase(sub, cur, candidates, nil)
		return nil
	}
	entries := make([]*entry, 0, len(changed))
	size := 0
	for _, n := range changed {
		e := cur.entries[n]
		sz := e.deltaSize + 4 // the field's tag and length
		if budget > 0 && len(entries) > 0 && size+sz > budget {
			break
		}
		size += sz
		entries = append(entries, e)
	}
	if len(entries) == len(changed) {
		// Sent all it was owed: it holds cur, exactly.
		t.state = clientState{base: cur}
		return &deltaResult{entries: entries, removed: gone, bytes: size}
	}
	sent := changed[:len(entries)]
	t.state.sentPart(sub, cur, candidates, sent, gone)
	return &deltaResult{entries: entries, removed: gone, bytes: size, split: true}
}
