package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/ratelog"
	"github.com/horizonmesh/horizon/xds"
)

// Cache is the go-control-plane cache behind Horizon's ADS server. Unlike
// go-control-plane's snapshot cache it keeps one set of resources per view
// (Group), shared by every proxy of that view and marshalled once; it answers
// per resource name (a grpc-go client subscribes to only the listeners it
// dials); and its versions are content hashes, so
//
//   - a client that reconnects holding the current state gets no push;
//   - a NACKed version is not sent again until its content changes;
//   - equal input gives equal versions across restarts and replicas.
type Cache struct {
	log     *slog.Logger
	metrics *Metrics
	// build renders a view; prev is the memo of the view's last published
	// render, nil for a new view (see RenderFrom).
	build func(cs *discovery.ClusterSet, g xds.Group, prev *xds.Memo) (*xds.Resources, *xds.Memo, error)
	// maxViews bounds len(views) (0: no bound); rlog logs refusals.
	maxViews int
	rlog     *ratelog.Logger
	// maxResponseBytes bounds a state-of-the-world response (0: no bound):
	// see sotwResponse.
	maxResponseBytes int

	mu sync.Mutex
	cs *discovery.ClusterSet
	// input names what views are rendered from: the ClusterSet's version and
	// the other inputs' (the policy file's), see Render.
	input string
	// labelKeys are the label keys the policy ranks on (Policy.LabelKeys):
	// the labels a request's Group carries, see Render.
	labelKeys []string
	views     map[xds.Group]*view
	nextID    uint64
	// epoch counts Renders: a stream resolves its view again when it
	// changed (a new ClusterSet or label keys), see follow.
	epoch uint64
}

var _ cachev3.Cache = (*Cache)(nil)

// view is the published state of one Group and the watches waiting on it.
type view struct {
	group    xds.Group
	res      *xds.Resources
	memo     *xds.Memo // what the view's next render may reuse
	types    map[string]*typeState
	input    string // Cache.input when rendered
	sotw     map[uint64]*sotwWatch
	delta    map[uint64]*deltaWatch
	lastUsed time.Time
	// gen is types by index of xds.TypeURLs, for the streams of
	// EngineHorizon to read without the lock.
	gen atomic.Pointer[[numTypes]*typeState]
	// followers are the streams of EngineHorizon on the view.
	followers map[*adsStream]struct{}
}

// current returns the view's published state, by index of xds.TypeURLs.
func (v *view) current() *[numTypes]*typeState { return v.gen.Load() }

type sotwWatch struct {
	req   *cachev3.Request
	sub   cachev3.Subscription
	known map[string]string
	ch    chan cachev3.Response
}

type deltaWatch struct {
	req *cachev3.DeltaRequest
	sub cachev3.Subscription
	ch  chan cachev3.DeltaResponse
}

// NewCache returns a cache that renders views with build, typically
// Translate followed by Check.
func NewCache(log *slog.Logger, m *Metrics, build func(*discovery.ClusterSet, xds.Group) (*xds.Resources, error)) *Cache {
	return newCache(log, m, func(cs *discovery.ClusterSet, g xds.Group, _ *xds.Memo) (*xds.Resources, *xds.Memo, error) {
		res, err := build(cs, g)
		return res, nil, err
	})
}

// newCache is NewCache for a build function that reuses the view's previous
// render (the server's).
func newCache(log *slog.Logger, m *Metrics, build func(*discovery.ClusterSet, xds.Group, *xds.Memo) (*xds.Resources, *xds.Memo, error)) *Cache {
	return &Cache{log: log, metrics: m, build: build, views: map[xds.Group]*view{}, rlog: ratelog.New(log, logInterval)}
}

// errNotReady refuses streams until the first ClusterSet arrives: a proxy
// must never receive a view built from nothing.
var errNotReady = status.Error(codes.Unavailable, "horizon has no ClusterSet yet")

// groupOfLocked resolves a request's node into its view, with the label keys
// of the policy rendered last. It runs on every request, so a stream follows
// a change of those keys on its next request.
func (c *Cache) groupOfLocked(node *core.Node) (xds.Group, error) {
	if c.cs == nil {
		return xds.Group{}, errNotReady
	}
	p, err := xds.ResolveNode(node, c.cs)
	if err != nil {
		return xds.Group{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return p.GroupFor(c.labelKeys), nil
}

// viewLocked returns the view of a group, rendering it on first use.
func (c *Cache) viewLocked(g xds.Group) (*view, error) {
	if v, ok := c.views[g]; ok {
		v.lastUsed = time.Now()
		return v, nil
	}
	if c.maxViews > 0 && len(c.views) >= c.maxViews {
		c.metrics.rejectedStream("views")
		c.rlog.Warn("refused:views", "stream refused", "reason", "views", "view", g.String(), "views", len(c.views), "limit", c.maxViews)
		return nil, status.Errorf(codes.ResourceExhausted, "views: Horizon renders at most %d views; try again later", c.maxViews)
	}
	res, memo, err := c.build(c.cs, g, nil)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "render view %s: %v", g, err)
	}
	v := &view{group: g, sotw: map[uint64]*sotwWatch{}, delta: map[uint64]*deltaWatch{}, lastUsed: time.Now(), followers: map[*adsStream]struct{}{}}
	if err := v.publish(res, memo, c.input); err != nil {
		return nil, status.Errorf(codes.Internal, "publish view %s: %v", g, err)
	}
	c.views[g] = v
	c.metrics.setViews(len(c.views))
	return v, nil
}

// publish replaces the view's resources, marshalling each once: a resource
// the render took over from the previous one (the same message) keeps its
// entry.
func (v *view) publish(res *xds.Resources, memo *xds.Memo, input string) error {
	types := make(map[string]*typeState, len(xds.TypeURLs))
	for _, typeURL := range xds.TypeURLs {
		ts, err := newTypeState(typeURL, res.ByType(typeURL), v.types[typeURL])
		if err != nil {
			return err
		}
		types[typeURL] = ts
	}
	var gen [numTypes]*typeState
	for i, typeURL := range xds.TypeURLs {
		gen[i] = types[typeURL]
	}
	v.res, v.memo, v.types, v.input = res, memo, types, input
	v.gen.Store(&gen)
	return nil
}

// watchedLocked finds the view of a request's node and the state of the
// requested type. A type Horizon does not serve gives a nil state: such a
// watch is never answered, and never fails the stream.
func (c *Cache) watchedLocked(node *core.Node, typeURL string) (*view, *typeState, error) {
	g, err := c.groupOfLocked(node)
	if err != nil {
		return nil, nil, err
	}
	v, err := c.viewLocked(g)
	if err != nil {
		return nil, nil, err
	}
	return v, v.types[typeURL], nil
}

// CreateWatch implements cachev3.ConfigWatcher for state-of-the-world streams.
func (c *Cache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ts, err := c.watchedLocked(req.GetNode(), req.GetTypeUrl())
	if err != nil || ts == nil {
		return func() {}, err
	}
	known := sub.ReturnedResources()
	first := req.GetResponseNonce() == ""
	if first && len(known) == 0 && req.GetVersionInfo() != "" {
		// A new stream from a client that already holds a state: if it is the
		// current one, there is nothing to send.
		if current := currentVersions(ts, sub); stateVersion(current) == req.GetVersionInfo() {
			known, first = current, false
		}
	}
	if resp := sotwResponse(ts, req, sub, known, first, c.maxResponseBytes); resp != nil {
		c.sendSotw(ch, resp)
		return func() {}, nil
	}
	c.nextID++
	id := c.nextID
	v.sotw[id] = &sotwWatch{req: req, sub: sub, known: known, ch: ch}
	return func() {
		c.mu.Lock()
		delete(v.sotw, id)
		c.mu.Unlock()
	}, nil
}

// CreateDeltaWatch implements cachev3.ConfigWatcher for incremental streams.
func (c *Cache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ts, err := c.watchedLocked(req.GetNode(), req.GetTypeUrl())
	if err != nil || ts == nil {
		return func() {}, err
	}
	// Envoy waits for the first answer to a wildcard subscription, even an
	// empty one, before it finishes initialising.
	force := sub.IsWildcard() && req.GetResponseNonce() == ""
	if resp := deltaResponse(ts, req, sub, force, c.maxResponseBytes); resp != nil {
		c.sendDelta(ch, resp)
		return func() {}, nil
	}
	c.nextID++
	id := c.nextID
	v.delta[id] = &deltaWatch{req: req, sub: sub, ch: ch}
	return func() {
		c.mu.Lock()
		delete(v.delta, id)
		c.mu.Unlock()
	}, nil
}

// Fetch implements cachev3.ConfigFetcher; Horizon serves streams only.
func (c *Cache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errors.New("horizon serves xDS over streams only")
}

// The server gives each stream one watch per type and drains the channel
// before it opens the next, so a send never finds the buffer full; if one
// ever did, dropping is safe (the client asks again) and is counted.
func (c *Cache) send(ch chan cachev3.Response, r cachev3.Response) {
	select {
	case ch <- r:
	default:
		c.metrics.droppedResponse()
	}
}

// sendSotw sends r, counting and logging a response over maxResponseBytes
// that could not be split (see sotwResponse).
func (c *Cache) sendSotw(ch chan cachev3.Response, r *sotwResp) {
	if c.maxResponseBytes > 0 && r.bytes > c.maxResponseBytes {
		typ := xds.ShortType(r.req.GetTypeUrl())
		c.metrics.oversize(r.req.GetTypeUrl())
		c.rlog.Warn("oversize:"+typ, "response larger than the maximum sent whole: its type or its largest resource cannot be split; clients with a smaller receive limit refuse it",
			"type", typ, "bytes", r.bytes, "limit", c.maxResponseBytes, "resources", len(r.resources))
	}
	c.send(ch, r)
}

func (c *Cache) sendDelta(ch chan cachev3.DeltaResponse, r cachev3.DeltaResponse) {
	if d, ok := r.(*deltaResp); ok && c.maxResponseBytes > 0 && d.bytes > c.maxResponseBytes {
		typ := xds.ShortType(d.req.GetTypeUrl())
		c.metrics.oversize(d.req.GetTypeUrl())
		c.rlog.Warn("oversize:"+typ, "response larger than the maximum sent whole: its type or its largest resource cannot be split; clients with a smaller receive limit refuse it",
			"type", typ, "bytes", d.bytes, "limit", c.maxResponseBytes, "resources", len(d.resources))
	}
	select {
	case ch <- r:
	default:
		c.metrics.droppedResponse()
	}
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

func currentVersions(ts *typeState, sub cachev3.Subscription) map[string]string {
	names := subscribedNames(ts, sub)
	out := make(map[string]string, len(names))
	for _, n := range names {
		out[n] = ts.entries[n].version
	}
	return out
}

// sotwResponse computes what a state-of-the-world client holding known must
// receive, or nil. Listeners and clusters are sent in full whenever anything
// changed; other types carry only what changed. force answers a client's
// first request even when there is nothing (it waits for an answer).
//
// budget (0: none) bounds the bytes of the resources one response carries.
// Endpoints and routes may come in several responses (the protocol lets a
// SotW response of those types carry a subset; the client keeps what it is
// not sent): past the budget, the rest waits for the client's next request,
// which this function answers with the next part, and so on. Listeners and
// clusters must come whole, and one resource cannot be cut: a response over
// the budget for those reasons is sent whole, and sendSotw reports it.
func sotwResponse(ts *typeState, req *cachev3.Request, sub cachev3.Subscription, known map[string]string, force bool, budget int) *sotwResp {
	if !force && holdsCurrent(ts, sub, known) {
		return nil // the common case, every ACK: nothing to compute or allocate
	}
	// The covered names: a wildcard's are ts.names, sorted; a subscription's
	// are collected unsorted, and only what is sent is sorted.
	wildcard := sub.IsWildcard()
	names := ts.names
	if !wildcard {
		names = nil
		for n := range sub.SubscribedResources() {
			if _, ok := ts.entries[n]; ok {
				names = append(names, n)
			}
		}
	}
	current := make(map[string]string, len(names))
	var changed []string
	for _, n := range names {
		e := ts.entries[n]
		current[n] = e.version
		if known[n] != e.version {
			changed = append(changed, n)
		}
	}
	removed := false
	for n := range known {
		if _, ok := current[n]; !ok {
			removed = true
			break
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
	if !wildcard {
		slices.Sort(send)
	}
	resources := make([]*anypb.Any, 0, len(send))
	size := 0
	var later []string // past the budget: sent after the client's next request
	for i, n := range send {
		a := ts.entries[n].any
		sz := anyFieldSize(a)
		if budget > 0 && !full && i > 0 && size+sz > budget {
			later = send[i:]
			break
		}
		size += sz
		resources = append(resources, a)
	}
	// A client that holds every resource holds the state ts.version names
	// (newTypeState hashes the same way): no need to hash it again.
	version := ts.version
	if len(current) != len(ts.entries) {
		version = stateVersion(current)
	}
	returned := current
	if later != nil {
		// The client holds the versions it knew of what it is not sent yet.
		returned = maps.Clone(current)
		for _, n := range later {
			if v, ok := known[n]; ok {
				returned[n] = v
			} else {
				delete(returned, n)
			}
		}
		version = stateVersion(returned)
	}
	return &sotwResp{req: req, version: version, resources: resources, returned: returned, bytes: size}
}

// anyFieldSize is the bytes a resource takes in a DiscoveryResponse: its Any
// and the field's tag and length.
func anyFieldSize(a *anypb.Any) int {
	n := protowire.SizeBytes(len(a.GetTypeUrl())) + protowire.SizeBytes(len(a.GetValue())) + 2
	return protowire.SizeBytes(n) + 1
}

// holdsCurrent reports whether a client holding known holds exactly the
// current version of every resource its subscription covers, and nothing
// else: then it is owed nothing. It allocates nothing.
func holdsCurrent(ts *typeState, sub cachev3.Subscription, known map[string]string) bool {
	covered := 0
	if sub.IsWildcard() {
		for _, n := range ts.names {
			if known[n] != ts.entries[n].version {
				return false
			}
		}
		covered = len(ts.names)
	} else {
		for n := range sub.SubscribedResources() {
			e, ok := ts.entries[n]
			if !ok {
				continue
			}
			if known[n] != e.version {
				return false
			}
			covered++
		}
	}
	// Every covered name is known at its version; as many names are known
	// as are covered, so no other name is.
	return covered == len(known)
}

func deltaResponse(ts *typeState, req *cachev3.DeltaRequest, sub cachev3.Subscription, force bool, budget int) cachev3.DeltaResponse {
	known := sub.ReturnedResources()
	if !force && holdsCurrent(ts, sub, known) {
		return nil
	}
	var changed, removed []string
	if sub.IsWildcard() {
		for _, n := range ts.names {
			if known[n] != ts.entries[n].version {
				changed = append(changed, n)
			}
		}
		for n := range known {
			if _, ok := ts.entries[n]; !ok {
				removed = append(removed, n)
			}
		}
	} else {
		subscribed := sub.SubscribedResources()
		for n := range subscribed {
			if e, ok := ts.entries[n]; ok && known[n] != e.version {
				changed = append(changed, n)
			}
		}
		for n := range known {
			_, exists := ts.entries[n]
			_, wanted := subscribed[n]
			if !exists || !wanted {
				removed = append(removed, n)
			}
		}
	}
	if len(changed) == 0 && len(removed) == 0 && !force {
		return nil
	}
	slices.Sort(changed)
	slices.Sort(removed)
	return newDeltaResp(ts, req, known, changed, removed, budget)
}

// newDeltaResp answers a client holding known with the changed resources
// and the removed names (both sorted), and the state it holds after it.
// newDeltaResp sends changed and removed to a client holding known. budget
// (0: none) bounds the bytes of the resources it carries, at least one: a
// delta response may carry any subset, and the client's next request gets
// the rest (what it holds says what is still owed).
func newDeltaResp(ts *typeState, req *cachev3.DeltaRequest, known map[string]string, changed, removed []string, budget int) *deltaResp {
	returned := maps.Clone(known)
	if returned == nil {
		returned = map[string]string{}
	}
	resources := make([]*discoverypb.Resource, 0, len(changed))
	size := 0
	for _, n := range changed {
		e := ts.entries[n]
		sz := proto.Size(e.delta) + 4 // the field's tag and length
		if budget > 0 && len(resources) > 0 && size+sz > budget {
			break
		}
		size += sz
		resources = append(resources, e.delta)
		returned[n] = e.version
	}
	for _, n := range removed {
		delete(returned, n)
	}
	return &deltaResp{req: req, version: ts.version, resources: resources, removed: removed, returned: returned, bytes: size}
}

// Update renders every view from a new ClusterSet and answers the watches
// whose state changed, type by type in push order (CDS, EDS, LDS, RDS). A view
// that fails to render or check keeps its last good resources. Rendering runs
// outside the lock; views first used meanwhile are rendered from cs already.
func (c *Cache) Update(cs *discovery.ClusterSet) error { return c.Render(cs, "", nil) }

// Render is Update for a build function that reads more than the ClusterSet
// (the server's policy file): version names that other input, and a view is
// rendered again when the ClusterSet's version or it changed. Its resources'
// versions are content hashes, so a view whose output is unchanged pushes
// nothing.
//
// labelKeys are the label keys that policy ranks on (Policy.LabelKeys): from
// now on a request's Group carries the proxy's values of those. Views already
// published keep their Group and are rendered again like every other; a
// watch waiting on one stays there until it is answered, and the stream's
// next request (its ACK, or a new subscription) resolves the node into the
// group of the new keys. Until then a proxy is ranked as if it declared only
// the labels of the old keys; views nobody asks for any more are evicted.
func (c *Cache) Render(cs *discovery.ClusterSet, version string, labelKeys []string) error {
	input := cs.Version() + "\x00" + version
	c.mu.Lock()
	c.cs, c.input, c.labelKeys = cs, input, labelKeys
	c.epoch++
	type rendered struct {
		group xds.Group
		res   *xds.Resources
		memo  *xds.Memo
	}
	stale := make([]rendered, 0, len(c.views)) // each view with its last render's memo
	for g, v := range c.views {
		if v.input != input {
			stale = append(stale, rendered{g, nil, v.memo})
		}
	}
	c.mu.Unlock()

	var out []rendered
	var errs []error
	for _, r := range stale {
		res, memo, err := c.build(cs, r.group, r.memo)
		if err != nil {
			c.metrics.buildError()
			errs = append(errs, fmt.Errorf("view %s: %w", r.group, err))
			continue
		}
		out = append(out, rendered{r.group, res, memo})
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cs != cs || c.input != input {
		return errors.Join(errs...) // a newer ClusterSet or policy is being applied
	}
	for _, r := range out {
		v, ok := c.views[r.group]
		if !ok {
			continue
		}
		prev := v.types
		if err := v.publish(r.res, r.memo, input); err != nil {
			c.metrics.buildError()
			errs = append(errs, fmt.Errorf("view %s: %w", r.group, err))
			continue
		}
		c.notifyLocked(v, prev)
	}
	return errors.Join(errs...)
}

// notifyLocked answers the watches of a view just published over prev. A
// watch waits only while the published state holds nothing new for it, so
// a type whose version (a hash of every resource's content) is unchanged
// has nothing for any of its watches, and is skipped. Otherwise only the
// names whose entries changed can be owed (see changedNames).
func (c *Cache) notifyLocked(v *view, prev map[string]*typeState) {
	c.wakeLocked(v, prev)
	for _, typeURL := range xds.TypeURLs {
		ts, old := v.types[typeURL], prev[typeURL]
		if old != nil && old.version == ts.version {
			continue
		}
		var diff []string
		if old != nil {
			diff = changedNames(old, ts)
		}
		for id, w := range v.sotw {
			if w.req.GetTypeUrl() != typeURL || (old != nil && !coversAny(w.sub, diff)) {
				continue
			}
			if resp := sotwResponse(ts, w.req, w.sub, w.known, false, c.maxResponseBytes); resp != nil {
				c.sendSotw(w.ch, resp)
				delete(v.sotw, id)
			}
		}
		for id, w := range v.delta {
			if w.req.GetTypeUrl() != typeURL {
				continue
			}
			var resp cachev3.DeltaResponse
			if old != nil {
				resp = deltaResponseAfter(diff, ts, w.req, w.sub, c.maxResponseBytes)
			} else {
				resp = deltaResponse(ts, w.req, w.sub, false, c.maxResponseBytes)
			}
			if resp != nil {
				c.sendDelta(w.ch, resp)
				delete(v.delta, id)
			}
		}
	}
}

// changedNames lists, sorted, the names whose entry differs between two
// states of a type: added, changed or removed.
func changedNames(prev, ts *typeState) []string {
	var out []string
	for _, n := range ts.names {
		if e := prev.entries[n]; e == nil || e.version != ts.entries[n].version {
			out = append(out, n)
		}
	}
	for _, n := range prev.names {
		if _, ok := ts.entries[n]; !ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// coversAny reports whether a subscription covers any of names.
func coversAny(sub cachev3.Subscription, names []string) bool {
	if len(names) == 0 {
		return false
	}
	if sub.IsWildcard() {
		return true
	}
	subscribed := sub.SubscribedResources()
	for _, n := range names {
		if _, ok := subscribed[n]; ok {
			return true
		}
	}
	return false
}

// deltaResponseAfter is deltaResponse for a watch that was waiting when ts
// replaced the state diff was taken against: such a client holds exactly
// what its subscription covered of the old state (a watch waits only then,
// see holdsCurrent), so only the changed names can be owed, and the work
// is proportional to them instead of to the subscription.
func deltaResponseAfter(diff []string, ts *typeState, req *cachev3.DeltaRequest, sub cachev3.Subscription, budget int) cachev3.DeltaResponse {
	known := sub.ReturnedResources()
	subscribed, wildcard := sub.SubscribedResources(), sub.IsWildcard()
	var changed, removed []string
	for _, n := range diff {
		e, exists := ts.entries[n]
		_, wanted := subscribed[n]
		v, knows := known[n]
		switch {
		case exists && (wildcard || wanted) && v != e.version:
			changed = append(changed, n)
		case !exists && knows:
			removed = append(removed, n)
		}
	}
	if len(changed) == 0 && len(removed) == 0 {
		return nil
	}
	return newDeltaResp(ts, req, known, changed, removed, budget)
}

// Evict drops views nobody has asked for since before, and that no watch
// waits on. Their next proxy renders them again.
func (c *Cache) Evict(before time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for g, v := range c.views {
		if v.lastUsed.Before(before) && len(v.sotw) == 0 && len(v.delta) == 0 && len(v.followers) == 0 {
			delete(c.views, g)
		}
	}
	c.metrics.setViews(len(c.views))
}

// ViewInfo describes a published view for debug pages.
type ViewInfo struct {
	Group     xds.Group
	Versions  map[string]string // type URL -> system version
	Resources *xds.Resources
	Watches   int
}

// View returns the published state of a group, if it has one.
func (c *Cache) View(g xds.Group) (ViewInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.views[g]
	if !ok {
		return ViewInfo{}, false
	}
	return v.info(), true
}

// Views returns every published view, sorted by group.
func (c *Cache) Views() []ViewInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ViewInfo, 0, len(c.views))
	for _, v := range c.views {
		out = append(out, v.info())
	}
	slices.SortFunc(out, func(a, b ViewInfo) int { return strings.Compare(a.Group.String(), b.Group.String()) })
	return out
}

func (v *view) info() ViewInfo {
	versions := make(map[string]string, len(v.types))
	for t, ts := range v.types {
		versions[t] = ts.version
	}
	return ViewInfo{Group: v.group, Versions: versions, Resources: v.res, Watches: len(v.sotw) + len(v.delta) + len(v.followers)}
}

// sotwResp is a state-of-the-world response whose resources are the view's
// shared, already-marshalled copies.
type sotwResp struct {
	req       *cachev3.Request
	version   string
	resources []*anypb.Any
	returned  map[string]string
	bytes     int // of the resources, as encoded in the response
}

func (r *sotwResp) GetDiscoveryResponse() (*discoverypb.DiscoveryResponse, error) {
	// A new envelope each time: the server writes the nonce into it.
	return &discoverypb.DiscoveryResponse{VersionInfo: r.version, Resources: r.resources, TypeUrl: r.req.GetTypeUrl()}, nil
}
func (r *sotwResp) GetRequest() *discoverypb.DiscoveryRequest { return r.req }
func (r *sotwResp) GetVersion() (string, error)               { return r.version, nil }
func (r *sotwResp) GetResponseVersion() string                { return r.version }
func (r *sotwResp) GetReturnedResources() map[string]string   { return r.returned }
func (r *sotwResp) GetContext() context.Context               { return context.Background() }

type deltaResp struct {
	req       *cachev3.DeltaRequest
	version   string
	resources []*discoverypb.Resource
	removed   []string
	returned  map[string]string
	bytes     int // of the resources, as encoded in the response
}

func (r *deltaResp) GetDeltaDiscoveryResponse() (*discoverypb.DeltaDiscoveryResponse, error) {
	return &discoverypb.DeltaDiscoveryResponse{
		SystemVersionInfo: r.version, Resources: r.resources, RemovedResources: r.removed, TypeUrl: r.req.GetTypeUrl(),
	}, nil
}
func (r *deltaResp) GetDeltaRequest() *discoverypb.DeltaDiscoveryRequest { return r.req }
func (r *deltaResp) GetSystemVersion() (string, error)                   { return r.version, nil }
func (r *deltaResp) GetResponseVersion() string                          { return r.version }
func (r *deltaResp) GetNextVersionMap() map[string]string                { return r.returned }
func (r *deltaResp) GetReturnedResources() map[string]string             { return r.returned }
func (r *deltaResp) GetContext() context.Context                         { return context.Background() }
