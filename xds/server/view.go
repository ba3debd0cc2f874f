package server

import (
	"time"

	"github.com/horizonmesh/horizon/xds"
)

// follow puts a stream on the view of its node, rendering
// the view on first use. The node is resolved again after a Render (a new
// ClusterSet, or new label keys), as the first request resolved it
// (canonicalNode); otherwise the stream stays where it is.
func (c *Cache) follow(st *adsStream) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.view != nil && st.epoch == c.epoch && c.views[st.group] == st.view {
		return nil
	}
	raw, err := c.groupOfLocked(st.rec.canonical)
	if err != nil {
		return err
	}
	g := c.keyOfLocked(raw)
	v, err := c.viewLocked(g)
	if err != nil {
		return err
	}
	if st.view != v || st.raw != raw {
		c.leaveLocked(st)
		v.followers[st] = struct{}{}
		v.groups[raw]++
		st.view, st.raw = v, raw
	}
	st.group, st.epoch = g, c.epoch
	return nil
}

// refollow is follow for a woken stream: it resolves the stream's view
// again only when a Render happened since it last did, without the lock
// otherwise.
func (c *Cache) refollow(st *adsStream) error {
	if st.view == nil || st.epoch == c.epochNow.Load() {
		return nil
	}
	return c.follow(st)
}

// leaveLocked takes a stream off the view it follows.
func (c *Cache) leaveLocked(st *adsStream) {
	v := st.view
	if v == nil {
		return
	}
	delete(v.followers, st)
	if v.groups[st.raw]--; v.groups[st.raw] <= 0 {
		delete(v.groups, st.raw)
	}
	v.lastUsed = time.Now()
	st.view = nil
}

// unfollow takes a closed stream off its view.
func (c *Cache) unfollow(st *adsStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leaveLocked(st)
}

// wakeLocked wakes the streams of a view just published over prev that the
// change touches: those subscribed to a type by wildcard, or to a name
// whose resource was added, changed or removed. The diff of each type is
// computed once for the view (typeState.diffFrom) and whether it touches a
// set of names once per interned set (nameSet.touches), so a stream costs
// a few pointer reads here, and a stream the change does not touch is not
// woken at all. A woken stream computes its response on its own goroutine
// from the state it holds (see clientState.owed); one with a response in
// flight just finds it owed when the client answers.
func (c *Cache) wakeLocked(v *view, prev map[string]*typeState) {
	if len(v.followers) == 0 {
		return
	}
	var diffs [numTypes]*typeDiff
	changed := false
	for i, typeURL := range xds.TypeURLs {
		ts, old := v.types[typeURL], prev[typeURL]
		if old != nil && old.version == ts.version {
			continue
		}
		if d := ts.diffFrom(old); len(d.names) > 0 {
			diffs[i], changed = d, true
		}
	}
	if !changed {
		return
	}
	for st := range v.followers {
		for i, d := range diffs {
			if d == nil {
				continue
			}
			if sub := st.subs[i].Load(); sub != nil && (sub.wildcard || sub.names.touches(d)) {
				st.wake()
				break
			}
		}
	}
}
