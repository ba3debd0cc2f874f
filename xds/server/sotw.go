package server

import (
	"slices"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/xds"
)

// explicitWildcard is the resource name that subscribes to every resource
// of a type (xds_protocol#how-the-client-specifies-what-resources-to-return).
const explicitWildcard = "*"

// sotwRequest applies a state-of-the-world request (one that answers the
// type's last response, or the type's first) to type i.
func (st *adsStream) sotwRequest(i int, r *request) error {
	t := st.types[i]
	if t == nil {
		// A first request without names is a wildcard one, until the
		// client names a resource (legacy wildcard).
		t = &typeStream{legacy: true}
		st.types[i] = t
		st.setSubscription(i, &subscription{wildcard: len(r.names) == 0})
	}
	if err := st.sotwSubscribe(i, t, r.names); err != nil {
		return err
	}
	t.armed = true
	if r.nonce != "" {
		t.force = false
		return nil
	}
	// Nothing has been sent of the type on this stream (see handle). A
	// client that presented a state it holds, and presents it again, still
	// holds it (of the names it still asks for).
	if t.presented != "" && r.version == t.presented {
		t.force = false
		return nil
	}
	// Otherwise the client may hold a state from an earlier stream: if
	// that is the current state, there is nothing to send; if not, it is
	// owed the whole state, even if empty.
	t.state, t.presented, t.force = clientState{}, "", true
	if r.version != "" {
		cur := st.view.current()[i]
		if _, version := presentNames(st.subs[i].Load(), cur); version == r.version {
			t.state.base, t.presented, t.force = cur, r.version, false
		}
	}
	return nil
}

// sotwSubscribe sets the names a request asks for: every request carries
// them all. The client keeps what it holds of the names it still asks for.
func (st *adsStream) sotwSubscribe(i int, t *typeStream, names []string) error {
	if t.legacy {
		if len(names) == 0 {
			return nil
		}
		t.legacy = false
	}
	h := hashNames(names)
	if t.hashed && h == t.namesHash {
		return nil
	}
	if len(names) > MaxSubscribedNames {
		return st.tooManyNames(xds.TypeURLs[i], len(names))
	}
	to := &subscription{}
	plain := names
	if slices.Contains(names, explicitWildcard) {
		to.wildcard = true
		plain = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == explicitWildcard })
	}
	to.names = st.srv.names.get(plain)
	from := st.subs[i].Load()
	t.state.resubscribe(from, to, func(n string) held {
		if !to.covers(n) {
			return held{}
		}
		return t.state.known(from, n)
	}, nil)
	st.setSubscription(i, to)
	t.namesHash, t.hashed = h, true
	return nil
}

// presentNames returns the names a subscription covers that cur holds,
// sorted, and the version_info of a client holding exactly those.
func presentNames(sub *subscription, cur *typeState) ([]string, string) {
	if sub.wildcard {
		return cur.names, cur.version
	}
	if sub.names == nil {
		return nil, stateVersion(nil)
	}
	return sub.names.presentIn(cur)
}

// sotwRespond sends what an armed state-of-the-world type is owed, if
// anything. Listeners and clusters are sent whole whenever anything of
// theirs changed; assignments and routes carry only what changed, and
// past the byte budget the rest waits for the client's next request (the
// protocol lets a response of those types carry a subset: the client
// keeps what it is not sent). A type's first response is owed even if it
// is empty.
func (st *adsStream) sotwRespond(t *typeStream, typeURL string, sub *subscription, cur *typeState) error {
	r := sotwCompute(t, typeURL, sub, cur, st.srv.cache.maxResponseBytes)
	if r == nil {
		// Nothing owed: whatever a split left for later has been sent or
		// is no longer owed (a NACKed part counts as held), so the types
		// after this one wait no longer (flush).
		t.split = false
		return nil
	}
	nonce := st.nextNonce()
	resp := &discoverypb.DiscoveryResponse{VersionInfo: r.version, Resources: r.resources, TypeUrl: typeURL, Nonce: nonce}
	st.srv.onResponse(st.key, typeURL, nonce, r.version, resourceBytes(r.resources))
	st.oversize(typeURL, r.bytes, len(r.resources))
	t.armed, t.force, t.nonce, t.split = false, false, nonce, r.split
	return st.ss.SendMsg(resp)
}

// sotwResult is a state-of-the-world response's content.
type sotwResult struct {
	version   string
	resources []*anypb.Any
	bytes     int  // of the resources, as encoded in the response
	split     bool // the budget left some of what is owed for later
}

// sotwCompute computes what an armed type is owed (nil: nothing), and
// records that the client holds it once sent. budget (0: none) bounds
// the bytes of a response's resources.
func sotwCompute(t *typeStream, typeURL string, sub *subscription, cur *typeState, budget int) *sotwResult {
	changed, gone, candidates := t.state.owed(sub, cur)
	full := cachev3.ResourceRequiresFullStateInSotw(typeURL)
	if !t.force && len(changed) == 0 && !(full && len(gone) > 0) {
		t.state.rebase(sub, cur, candidates, nil)
		return nil
	}
	present, version := presentNames(sub, cur)
	send := changed
	if t.force || full {
		send = present
	}
	resources := make([]*anypb.Any, 0, len(send))
	size := 0
	var later []string // past the budget: sent after the client's next request
	for i, n := range send {
		a := cur.entries[n].any
		sz := anyFieldSize(a)
		if budget > 0 && !full && i > 0 && size+sz > budget {
			later = send[i:]
			break
		}
		size += sz
		resources = append(resources, a)
	}
	// The client now holds what it is sent, and no longer what its
	// subscription does not find in cur (it is not told so, but it is
	// owed it again should it come back).
	if later == nil {
		// Sent all it was owed: it holds cur, exactly.
		t.state = clientState{base: cur}
		return &sotwResult{version: version, resources: resources, bytes: size}
	}
	sent := send[:len(resources)]
	t.state.sentPart(sub, cur, candidates, sent, gone)
	return &sotwResult{version: stateVersion(t.state.snapshot(sub)), resources: resources, bytes: size, split: true}
}
