package server

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/xds"
)

// TestHoldsCurrentIsExact: the shortcut holdsCurrent says "nothing to send"
// exactly when the full comparison finds nothing changed or removed, over
// random states, subscriptions and client knowledge (wildcard or not).
func TestHoldsCurrentIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c", "d", "e"}
	for i := range 20000 {
		ts := &typeState{typeURL: xds.TypeURLs[1], entries: map[string]*entry{}}
		for _, n := range names {
			if rng.IntN(3) > 0 {
				ts.entries[n] = &entry{name: n, version: fmt.Sprint("v", rng.IntN(2))}
				ts.names = append(ts.names, n)
			}
		}
		known := map[string]string{}
		for _, n := range names {
			if rng.IntN(3) > 0 {
				known[n] = fmt.Sprint("v", rng.IntN(2))
			}
		}
		var subscribed []string
		for _, n := range names {
			if rng.IntN(2) > 0 {
				subscribed = append(subscribed, n)
			}
		}
		wildcard := rng.IntN(3) == 0
		if wildcard {
			subscribed = nil
		}
		delta := streamv3.NewDeltaSubscription(subscribed, nil, nil, true)
		delta.SetReturnedResources(known)
		sotw := streamv3.NewSotwSubscription(subscribed, true)
		sotw.SetReturnedResources(known)
		for _, c := range []struct {
			name string
			sub  cachev3.Subscription
			full bool // the slow path's verdict: nothing to send
		}{
			{"delta", &delta, slowDeltaNothing(ts, &delta)},
			{"sotw", &sotw, slowSotwNothing(ts, &sotw, known)},
		} {
			if got := holdsCurrent(ts, c.sub, known); got != c.full {
				t.Fatalf("case %d %s (wildcard %v, subscribed %v, known %v, state %v): holdsCurrent %v, the full comparison says nothing is owed: %v",
					i, c.name, wildcard, subscribed, known, ts.names, got, c.full)
			}
		}
	}
}

// slowDeltaNothing is deltaResponse's full comparison: nothing changed or
// removed for this subscription.
func slowDeltaNothing(ts *typeState, sub cachev3.Subscription) bool {
	known := sub.ReturnedResources()
	if sub.IsWildcard() {
		for _, n := range ts.names {
			if known[n] != ts.entries[n].version {
				return false
			}
		}
		for n := range known {
			if _, ok := ts.entries[n]; !ok {
				return false
			}
		}
		return true
	}
	subscribed := sub.SubscribedResources()
	for n := range subscribed {
		if e, ok := ts.entries[n]; ok && known[n] != e.version {
			return false
		}
	}
	for n := range known {
		_, exists := ts.entries[n]
		_, wanted := subscribed[n]
		if !exists || !wanted {
			return false
		}
	}
	return true
}

// slowSotwNothing: no covered resource's version differs and no known name
// is gone (the strictest reading, over every type).
func slowSotwNothing(ts *typeState, sub cachev3.Subscription, known map[string]string) bool {
	current := currentVersions(ts, sub)
	for n, v := range current {
		if known[n] != v {
			return false
		}
	}
	for n := range known {
		if _, ok := current[n]; !ok {
			return false
		}
	}
	return true
}

// TestResponseAfterDiffIsExact: for a watch that was waiting (its client
// holds what its subscription covered of the old state), the response
// computed from the changed names alone equals the full computation, and
// a state-of-the-world watch that covers none of them is owed nothing.
func TestResponseAfterDiffIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	names := []string{"a", "b", "c", "d", "e", "f"}
	state := func() *typeState {
		ts := &typeState{typeURL: xds.TypeURLs[1], entries: map[string]*entry{}, version: fmt.Sprint(rng.Int())}
		for _, n := range names {
			if rng.IntN(3) > 0 {
				e := &entry{name: n, version: fmt.Sprint("v", rng.IntN(2))}
				e.delta = &discoverypb.Resource{Name: n, Version: e.version}
				ts.entries[n], ts.names = e, append(ts.names, n)
			}
		}
		return ts
	}
	for i := range 20000 {
		old, cur := state(), state()
		var subscribed []string
		for _, n := range names {
			if rng.IntN(2) > 0 {
				subscribed = append(subscribed, n)
			}
		}
		if rng.IntN(3) == 0 {
			subscribed = nil // wildcard
		}
		sub := streamv3.NewDeltaSubscription(subscribed, nil, nil, true)
		known := currentVersions(old, &sub) // what the waiting client holds
		sub.SetReturnedResources(known)
		req := &cachev3.DeltaRequest{TypeUrl: xds.TypeURLs[1]}
		diff := changedNames(old, cur)
		budget := []int{0, 0, 12, 30}[rng.IntN(4)] // a resource here takes about 10 bytes
		full := deltaResponse(cur, req, &sub, false, budget)
		fast := deltaResponseAfter(diff, cur, req, &sub, budget)
		if (full == nil) != (fast == nil) {
			t.Fatalf("case %d: full %v, from the diff %v (subscribed %v, known %v, diff %v)", i, full, fast, subscribed, known, diff)
		}
		if full != nil {
			a, b := full.(*deltaResp), fast.(*deltaResp)
			var an, bn []string
			for _, r := range a.resources {
				an = append(an, r.GetName())
			}
			for _, r := range b.resources {
				bn = append(bn, r.GetName())
			}
			if !slices.Equal(an, bn) || !slices.Equal(a.removed, b.removed) || !maps.Equal(a.returned, b.returned) {
				t.Fatalf("case %d: full %v/%v/%v, from the diff %v/%v/%v", i, an, a.removed, a.returned, bn, b.removed, b.returned)
			}
		}
		ssub := streamv3.NewSotwSubscription(subscribed, true)
		sknown := currentVersions(old, &ssub)
		ssub.SetReturnedResources(sknown)
		if !coversAny(&ssub, diff) && sotwResponse(cur, &cachev3.Request{TypeUrl: xds.TypeURLs[1]}, &ssub, sknown, false, 0) != nil {
			t.Fatalf("case %d: a state-of-the-world watch covering none of %v is owed a response", i, diff)
		}
	}
}

// TestSotwResponseMatchesReference: the state-of-the-world response equals
// the straightforward computation (every covered name sorted, the state
// hashed) over random states, subscriptions, knowledge, types and forcing.
func TestSotwResponseMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	names := []string{"a", "b", "c", "d", "e", "f"}
	for i := range 20000 {
		ts := &typeState{typeURL: xds.TypeURLs[rng.IntN(len(xds.TypeURLs))], entries: map[string]*entry{}}
		versions := map[string]string{}
		for _, n := range names {
			if rng.IntN(3) > 0 {
				e := &entry{name: n, version: fmt.Sprint("v", rng.IntN(2))}
				e.any = &anypb.Any{TypeUrl: ts.typeURL, Value: []byte(n + e.version)}
				ts.entries[n], ts.names = e, append(ts.names, n)
				versions[n] = e.version
			}
		}
		ts.version = stateVersion(versions)
		var subscribed []string
		for _, n := range names {
			if rng.IntN(2) > 0 {
				subscribed = append(subscribed, n)
			}
		}
		if rng.IntN(3) == 0 {
			subscribed = nil
		}
		known := map[string]string{}
		for _, n := range names {
			if rng.IntN(2) > 0 {
				known[n] = fmt.Sprint("v", rng.IntN(2))
			}
		}
		sub := streamv3.NewSotwSubscription(subscribed, true)
		sub.SetReturnedResources(known)
		req := &cachev3.Request{TypeUrl: ts.typeURL}
		force := rng.IntN(4) == 0
		budget := []int{0, 0, 60, 130, 200}[rng.IntN(5)] // a resource takes about 60 bytes
		got, want := sotwResponse(ts, req, &sub, known, force, budget), sotwReference(ts, req, &sub, known, force, budget)
		if (got == nil) != (want == nil) {
			t.Fatalf("case %d: got %v, want %v", i, got, want)
		}
		if got == nil {
			continue
		}
		g, w := got, want
		if g.bytes != w.bytes {
			t.Fatalf("case %d: %d bytes, want %d", i, g.bytes, w.bytes)
		}
		if budget > 0 && !cachev3.ResourceRequiresFullStateInSotw(ts.typeURL) && len(g.resources) > 1 && g.bytes > budget {
			t.Fatalf("case %d: %d bytes of %s over the budget %d", i, g.bytes, ts.typeURL, budget)
		}
		if g.version != w.version || !maps.Equal(g.returned, w.returned) || !slices.EqualFunc(g.resources, w.resources, func(a, b *anypb.Any) bool { return a == b }) {
			t.Fatalf("case %d (subscribed %v, known %v, force %v, %s): got %s %v, want %s %v", i, subscribed, known, force, ts.typeURL, g.version, g.returned, w.version, w.returned)
		}
	}
}

// sotwReference is the state-of-the-world response computed plainly: what
// fits the budget is sent (at least one resource; listeners and clusters
// whole), and the client holds, of the rest, what it knew.
func sotwReference(ts *typeState, req *cachev3.Request, sub cachev3.Subscription, known map[string]string, force bool, budget int) *sotwResp {
	names := subscribedNames(ts, sub)
	current := map[string]string{}
	var changed []string
	for _, n := range names {
		current[n] = ts.entries[n].version
		if known[n] != current[n] {
			changed = append(changed, n)
		}
	}
	removed := false
	for n := range known {
		if _, ok := current[n]; !ok {
			removed = true
		}
	}
	full := cachev3.ResourceRequiresFullStateInSotw(ts.typeURL)
	switch {
	case force:
		changed = names
	case len(changed) == 0 && !(full && removed):
		return nil
	}
	send := changed
	if full {
		send = names
	}
	var resources []*anypb.Any
	size := 0
	sent := map[string]bool{}
	for _, n := range send {
		sz := anyFieldSize(ts.entries[n].any)
		if budget > 0 && !full && len(resources) > 0 && size+sz > budget {
			break
		}
		size += sz
		sent[n] = true
		resources = append(resources, ts.entries[n].any)
	}
	returned := map[string]string{}
	for _, n := range names {
		switch v, ok := known[n]; {
		case sent[n] || !slices.Contains(send, n):
			returned[n] = current[n]
		case ok:
			returned[n] = v
		}
	}
	return &sotwResp{req: req, version: stateVersion(returned), resources: resources, returned: returned, bytes: size}
}
