package server

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/xds"
)

// randomState is a published state of typeURL over some of names.
func randomState(rng *rand.Rand, typeURL string, names []string) *typeState {
	ts := &typeState{typeURL: typeURL, entries: map[string]*entry{}, seq: typeStates.Add(1)}
	versions := map[string]string{}
	for _, n := range names {
		if rng.IntN(4) > 0 {
			e := &entry{name: n, version: fmt.Sprint("v", rng.IntN(3))}
			e.any = &anypb.Any{TypeUrl: typeURL, Value: []byte(n + e.version)}
			e.deltaSize = proto.Size(&discoverypb.Resource{Name: n, Version: e.version, Resource: e.any})
			ts.entries[n], ts.names = e, append(ts.names, n)
			versions[n] = e.version
		}
	}
	ts.version = stateVersion(versions)
	return ts
}

// randomNames is a request's names: some of names, sometimes "*", in any
// order, sometimes repeated.
func randomNames(rng *rand.Rand, names []string) []string {
	var out []string
	for _, n := range names {
		if rng.IntN(3) == 0 {
			out = append(out, n)
		}
	}
	if rng.IntN(6) == 0 {
		out = append(out, explicitWildcard)
	}
	if len(out) > 0 && rng.IntN(8) == 0 {
		out = append(out, out[0])
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func testStream(budget int) *adsStream {
	return &adsStream{srv: &Server{names: newInterner(), cache: &Cache{maxResponseBytes: budget}}}
}

func anyNames(rs []*anypb.Any) []string {
	var out []string
	for _, a := range rs {
		out = append(out, string(a.GetValue()))
	}
	return out
}

// TestSotwStateMatchesReference: over random sequences of requests (names
// added, dropped, wildcard, legacy wildcard), publishes and responses
// (with and without a byte budget), a state-of-the-world stream, which
// holds a reference to a published state and exceptions, sends exactly what the plain computation (go-control-plane's
// subscription, a name -> version map of what the client holds, and
// sotwReference) sends, and holds exactly the same afterwards.
func TestSotwStateMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	names := []string{"a", "b", "c", "d", "e", "f", "g"}
	for i := range 3000 {
		typeURL := xds.TypeURLs[rng.IntN(len(xds.TypeURLs))]
		idx := typeIndex(typeURL)
		budget := []int{0, 0, 60, 130}[rng.IntN(4)]
		st := testStream(budget)
		cur := randomState(rng, typeURL, names)
		var ref streamv3.Subscription
		var ts *typeStream
		armed, force := false, false
		for step := range 40 {
			switch op := rng.IntN(3); {
			case op == 0 || ts == nil: // a request answering the last response
				req := randomNames(rng, names)
				if ts == nil {
					ref = streamv3.NewSotwSubscription(req, true)
					ts = &typeStream{legacy: true}
					st.types[idx] = ts
					st.setSubscription(idx, &subscription{wildcard: len(req) == 0})
					force = true
				} else {
					ref.SetResourceSubscription(req)
					force = false
				}
				if err := st.sotwSubscribe(idx, ts, req); err != nil {
					t.Fatal(err)
				}
				ts.armed, ts.force, armed = true, force, true
			case op == 1:
				if rng.IntN(3) == 0 {
					cur = randomState(rng, typeURL, names[:3]) // many removed at once
				} else {
					cur = randomState(rng, typeURL, names)
				}
			}
			if !armed {
				continue
			}
			sub := st.subs[idx].Load()
			want := sotwReference(cur, &ref, ref.ReturnedResources(), force, budget)
			got := sotwCompute(ts, typeURL, sub, cur, budget)
			if (got == nil) != (want == nil) {
				t.Fatalf("case %d step %d (%s, wildcard %v, subscribed %v): response %v, want %v", i, step, xds.ShortType(typeURL), ref.IsWildcard(), ref.SubscribedResources(), got, want)
			}
			if want != nil {
				if !slices.Equal(anyNames(got.resources), anyNames(want.resources)) || got.version != want.version || got.bytes != want.bytes {
					t.Fatalf("case %d step %d: sent %v (%s), want %v (%s)", i, step, anyNames(got.resources), got.version, anyNames(want.resources), want.version)
				}
				ref.SetReturnedResources(want.returned)
				ts.armed, ts.force, armed, force = false, false, false, false
			}
			if got, want := ts.state.snapshot(sub), ref.ReturnedResources(); !maps.Equal(got, want) {
				t.Fatalf("case %d step %d: holds %v, want %v", i, step, got, want)
			}
		}
	}
}

// TestDeltaStateMatchesReference is TestSotwStateMatchesReference for
// incremental streams: subscribe, unsubscribe (by name and "*"), legacy
// wildcard, initial_resource_versions, forced first answers and removals.
func TestDeltaStateMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	names := []string{"a", "b", "c", "d", "e", "f", "g"}
	for i := range 3000 {
		typeURL := xds.TypeURLs[rng.IntN(len(xds.TypeURLs))]
		idx := typeIndex(typeURL)
		budget := []int{0, 0, 30, 60}[rng.IntN(4)]
		st := testStream(budget)
		cur := randomState(rng, typeURL, names)
		var ref streamv3.Subscription
		var ts *typeStream
		force := false
		for step := range 40 {
			switch op := rng.IntN(3); {
			case op == 0 || ts == nil:
				sub, unsub := randomNames(rng, names), randomNames(rng, names)
				if rng.IntN(2) == 0 {
					sub = nil
				}
				nonce := "1"
				if ts == nil {
					initial := map[string]string{}
					if rng.IntN(3) == 0 {
						for _, n := range names {
							if rng.IntN(2) == 0 {
								initial[n] = fmt.Sprint("v", rng.IntN(3))
							}
						}
					}
					ref = streamv3.NewDeltaSubscription(sub, unsub, maps.Clone(initial), true)
					ts = &typeStream{legacy: true}
					for n, v := range initial {
						ts.state.set(&subscription{}, n, held{v, true})
					}
					st.types[idx] = ts
					st.setSubscription(idx, &subscription{wildcard: len(sub) == 0})
					nonce = ""
				} else {
					ref.UpdateResourceSubscriptions(sub, unsub)
					if rng.IntN(4) == 0 {
						nonce = ""
					}
				}
				if err := st.deltaSubscribe(idx, ts, sub, unsub); err != nil {
					t.Fatal(err)
				}
				force = ref.IsWildcard() && nonce == ""
				ts.armed, ts.force = true, force
			case op == 1:
				cur = randomState(rng, typeURL, names)
			}
			if !ts.armed {
				continue
			}
			sub := st.subs[idx].Load()
			if sub.wildcard != ref.IsWildcard() {
				t.Fatalf("case %d step %d: wildcard %v, want %v", i, step, sub.wildcard, ref.IsWildcard())
			}
			want := deltaReference(cur, &ref, force, budget)
			got := deltaCompute(ts, sub, cur, budget)
			if (got == nil) != (want == nil) {
				t.Fatalf("case %d step %d: response %v, want %v", i, step, got, want)
			}
			if want != nil {
				var gn, wn []string
				for _, e := range got.entries {
					gn = append(gn, e.name+"@"+e.version)
				}
				for _, r := range want.resources {
					wn = append(wn, r.GetName()+"@"+r.GetVersion())
				}
				if !slices.Equal(gn, wn) || !slices.Equal(got.removed, want.removed) || got.bytes != want.bytes {
					t.Fatalf("case %d step %d: sent %v removed %v, want %v removed %v", i, step, gn, got.removed, wn, want.removed)
				}
				ref.SetReturnedResources(want.returned)
				ts.armed, ts.force, force = false, false, false
			}
			if got, want := ts.state.snapshot(sub), ref.ReturnedResources(); !maps.Equal(got, want) {
				t.Fatalf("case %d step %d: holds %v, want %v", i, step, got, want)
			}
		}
	}
}
