package server

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/ratelog"
	"github.com/horizonmesh/horizon/xds"
)

// Cache holds the views Horizon's ADS streams follow: per view (Group) one
// set of resources, rendered, checked and marshalled once, shared by every
// proxy of the view, published as immutable states (typeState) that
// streams hold references to (see ads.go). Its versions are content
// hashes, so
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
	// views are keyed by what their render reads of a proxy (keys.Of): a
	// proxy's group is reduced to its view's key.
	views map[xds.Group]*view
	// viewKeys returns the view keys of a ClusterSet under the policy being
	// rendered (nil: every group is its own view); keys are the current
	// ClusterSet's.
	viewKeys func(*discovery.ClusterSet) *xds.ViewKeys
	keys     *xds.ViewKeys
	// epoch counts Renders: a stream resolves its view again when it
	// changed (a new ClusterSet or label keys), see follow. epochNow
	// mirrors it for streams to read without the lock.
	epoch    uint64
	epochNow atomic.Uint64
}

// view is the published state of one Group and the streams following it.
type view struct {
	group    xds.Group
	res      *xds.Resources
	memo     *xds.Memo // what the view's next render may reuse
	types    map[string]*typeState
	input    string // Cache.input when rendered
	lastUsed time.Time
	// gen is types by index of xds.TypeURLs, for the streams to read
	// without the lock.
	gen atomic.Pointer[[numTypes]*typeState]
	// followers are the streams on the view; groups counts them by the
	// group each resolved to (adsStream.raw), the groups keys reduced to
	// this view.
	followers map[*adsStream]struct{}
	groups    map[xds.Group]int
}

// current returns the view's published state, by index of xds.TypeURLs.
func (v *view) current() *[numTypes]*typeState { return v.gen.Load() }

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
	return p.DeclaredGroupFor(c.labelKeys), nil
}

// keyOfLocked returns the view a group is served under the current
// ClusterSet and policy.
func (c *Cache) keyOfLocked(g xds.Group) xds.Group {
	if c.keys == nil {
		return g
	}
	return c.keys.Of(g)
}

// ViewOf returns the view a proxy's group (Proxy.DeclaredGroupFor) is
// served now.
func (c *Cache) ViewOf(g xds.Group) xds.Group {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keyOfLocked(g)
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
	v := &view{group: g, lastUsed: time.Now(), followers: map[*adsStream]struct{}{}, groups: map[xds.Group]int{}}
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

// anyFieldSize is the bytes a resource takes in a DiscoveryResponse: its Any
// and the field's tag and length.
func anyFieldSize(a *anypb.Any) int {
	n := protowire.SizeBytes(len(a.GetTypeUrl())) + protowire.SizeBytes(len(a.GetValue())) + 2
	return protowire.SizeBytes(n) + 1
}

// Update renders every view from a new ClusterSet and wakes the streams
// whose state changed (each sends in push order: CDS, EDS, LDS, RDS). A view
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
// stream following one stays there, and its next request (its ACK, or a
// new subscription) resolves the node into the group of the new keys. Until then a proxy is ranked as if it declared only
// the labels of the old keys; views nobody asks for any more are evicted.
func (c *Cache) Render(cs *discovery.ClusterSet, version string, labelKeys []string) error {
	input := cs.Version() + "\x00" + version
	var keys *xds.ViewKeys
	if c.viewKeys != nil {
		keys = c.viewKeys(cs) // before the lock: it reads the server's policy
	}
	c.mu.Lock()
	c.cs, c.input, c.labelKeys, c.keys = cs, input, labelKeys, keys
	c.epoch++
	c.epochNow.Store(c.epoch)
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
		c.wakeLocked(v, prev)
	}
	c.regroupLocked()
	return errors.Join(errs...)
}

// regroupLocked wakes the streams whose group the new ClusterSet or policy
// reduces to another view than the one they follow (an endpoint now carries
// a locality or label value they declare, or none does any more), so that
// they move (follow) before their next response rather than after it.
func (c *Cache) regroupLocked() {
	for _, v := range c.views {
		for g := range v.groups {
			if c.keyOfLocked(g) == v.group {
				continue
			}
			for st := range v.followers {
				if st.raw == g {
					st.wake()
				}
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

// Evict drops views nobody has asked for since before, and that no stream
// follows. Their next proxy renders them again.
func (c *Cache) Evict(before time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for g, v := range c.views {
		if v.lastUsed.Before(before) && len(v.followers) == 0 {
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
	Watches   int // streams following the view
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
	return ViewInfo{Group: v.group, Versions: versions, Resources: v.res, Watches: len(v.followers)}
}
