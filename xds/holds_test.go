package xds

import (
	"fmt"
	"math/rand/v2"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
)

// TestHoldsCurrentIsExact: the shortcut holdsCurrent says "nothing to send"
// exactly when the full comparison finds nothing changed or removed, over
// random states, subscriptions and client knowledge (wildcard or not).
func TestHoldsCurrentIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c", "d", "e"}
	for i := range 20000 {
		ts := &typeState{typeURL: TypeURLs[1], entries: map[string]*entry{}}
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
