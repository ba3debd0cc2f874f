package server

import (
	"maps"
	"slices"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The plain computation of what a client is owed, over go-control-plane's
// subscriptions and a name -> version map of what the client holds: what
// Horizon served through go-control-plane's server before its own stream
// engine, kept as the reference the engine's per-stream state is proven
// against (state_test.go).

// sotwResp is a state-of-the-world response and what the client holds
// after it.
type sotwResp struct {
	version   string
	resources []*anypb.Any
	returned  map[string]string
	bytes     int
}

// deltaResp is an incremental response and what the client holds after it.
type deltaResp struct {
	resources []*discoverypb.Resource
	removed   []string
	returned  map[string]string
	bytes     int
}

// subscribedNames lists the names a subscription covers that the type holds.
func subscribedNames(ts *typeState, sub cachev3.Subscription) []string {
	if sub.IsWildcard() {
		return ts.names
	}
	var names []string
	for name := range sub.SubscribedResources() {
		if _, ok := ts.entries[name]; ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// sotwReference is the state-of-the-world response computed plainly: what
// fits the budget is sent (at least one resource; listeners and clusters
// whole), and the client holds, of the rest, what it knew. nil: nothing.
func sotwReference(ts *typeState, sub cachev3.Subscription, known map[string]string, force bool, budget int) *sotwResp {
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
	return &sotwResp{version: stateVersion(returned), resources: resources, returned: returned, bytes: size}
}

// deltaReference is the incremental response computed plainly: every
// subscribed resource the client lacks or holds at another version
// (within the budget, at least one), and every name it holds that is gone
// or no longer subscribed. nil: nothing (unless force).
func deltaReference(ts *typeState, sub cachev3.Subscription, force bool, budget int) *deltaResp {
	known := sub.ReturnedResources()
	var changed, removed []string
	subscribed := sub.SubscribedResources()
	for _, n := range ts.names {
		_, wanted := subscribed[n]
		if (sub.IsWildcard() || wanted) && known[n] != ts.entries[n].version {
			changed = append(changed, n)
		}
	}
	for n := range known {
		_, exists := ts.entries[n]
		_, wanted := subscribed[n]
		if !exists || !(sub.IsWildcard() || wanted) {
			removed = append(removed, n)
		}
	}
	if len(changed) == 0 && len(removed) == 0 && !force {
		return nil
	}
	slices.Sort(changed)
	slices.Sort(removed)
	returned := maps.Clone(known)
	if returned == nil {
		returned = map[string]string{}
	}
	var resources []*discoverypb.Resource
	size := 0
	for _, n := range changed {
		e := ts.entries[n]
		res := &discoverypb.Resource{Name: e.name, Version: e.version, Resource: e.any}
		sz := proto.Size(res) + 4
		if budget > 0 && len(resources) > 0 && size+sz > budget {
			break
		}
		size += sz
		resources = append(resources, res)
		returned[n] = e.version
	}
	for _, n := range removed {
		delete(returned, n)
	}
	return &deltaResp{resources: resources, removed: removed, returned: returned, bytes: size}
}
