package kube

import (
	"cmp"
	"context"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/horizonmesh/horizon/discovery"
)

// Source merges every member cluster into ClusterSet snapshots. Members are
// added, replaced and removed at run time (Set, Remove); Run starts their
// watchers and owns them. It publishes nothing until every member configured
// before the first publish has synced, or, with a StateStore, has a valid
// persisted state and has not synced within SyncWait: then it is served from
// that state, marked stale, until it syncs. So a fresh replica never serves
// a ClusterSet that lacks one of them; members added later join once they
// have synced. A stale member keeps its last known state.
type Source struct {
	log      *slog.Logger
	metrics  *Metrics
	onUpdate func(*discovery.ClusterSet)
	onChange func()
	staleTTL time.Duration
	kick     chan struct{} // a member or the configuration changed
	// The persisted state: where (nil: off), whose, how long a member
	// may take to sync before it is served from it.
	state       StateStore
	trustDomain string
	syncWait    time.Duration
	persist     *persister
	started     time.Time // when Run started

	mu        sync.Mutex
	slots     map[string]*slot
	published *discovery.ClusterSet
	problems  map[string]map[string]bool // cluster -> problem text -> seen
}

// SourceOptions configure a Source. Every field may be left out.
type SourceOptions struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// OnUpdate is called with every new ClusterSet, from Run's goroutine.
	OnUpdate func(*discovery.ClusterSet)
	// OnChange is called (and must not block) after every change a member
	// reports, even one that leaves the ClusterSet as it is (a new
	// namespace, an edited import): the MCS controller listens to it.
	OnChange func()
	// StaleTTL, when set, drops the endpoints of a member that has been stale
	// that long; 0 keeps them forever. A member served from its persisted
	// state is stale since the state's save time.
	StaleTTL time.Duration
	// State, when set, keeps each live member's state (debounced) and
	// serves a member configured at start that has not synced within
	// SyncWait from its persisted state, if it has a valid one.
	State StateStore
	// TrustDomain is recorded in persisted states; a state of another
	// trust domain is refused.
	TrustDomain string
	// SyncWait is how long a member configured at start may take to sync
	// before it is served from its persisted state (0: DefaultSyncWait).
	SyncWait time.Duration
	// StateDebounce spaces a member's saves (0: DefaultStateDebounce);
	// StateRefresh re-saves an unchanged live member this often, so that
	// its save time says when it was last known current (0:
	// DefaultStateRefresh).
	StateDebounce, StateRefresh time.Duration
}

// NewSource returns a Source with no members.
func NewSource(o SourceOptions) *Source {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		log: log, metrics: o.Metrics, onUpdate: o.OnUpdate, onChange: o.OnChange, staleTTL: o.StaleTTL,
		kick: make(chan struct{}, 1), slots: map[string]*slot{}, problems: map[string]map[string]bool{},
		state: o.State, trustDomain: o.TrustDomain, syncWait: cmp.Or(o.SyncWait, DefaultSyncWait),
	}
	if o.State != nil {
		s.persist = &persister{
			store: o.State, log: log, metrics: o.Metrics, trustDomain: o.TrustDomain,
			debounce: cmp.Or(o.StateDebounce, DefaultStateDebounce), refresh: cmp.Or(o.StateRefresh, DefaultStateRefresh),
		}
	}
	return s
}

// slot is one configured member: the member serving it, and during a
// rotation the member that will replace it once synced.
type slot struct {
	cur, next *running
	initial   bool // configured before the first publish
	// persisted is the state served while an initial member has not
	// synced; loaded says the store was asked for it.
	persisted *MemberState
	loaded    bool
	loadFails int // reads that failed for want of the store (retried)
	// wasStale: cur was stale when last published. A member whose API
	// server answers again is relisted by a fresh watcher (refresh), since
	// the stale one's reflectors may sit in client-go's list/watch backoff
	// for up to a minute after an outage (RELIABILITY.md, defect 1).
	wasStale bool
}

// running is a member and, once Run has started its watcher, the means to
// stop it.
type running struct {
	m      *Member
	cancel context.CancelFunc // nil until started
}

// MemberStatus is one member's state for debug pages and metrics.
type MemberStatus struct {
	Name       string    `json:"name"`
	ID         string    `json:"id"`
	Network    string    `json:"network"`
	Origin     string    `json:"origin"`
	State      State     `json:"state"`
	LastEvent  time.Time `json:"last_event"`
	StaleSince time.Time `json:"stale_since,omitzero"`
	// Reason says why a member is stale, or still syncing, when its API
	// server answers but refuses Horizon (ReasonForbidden,
	// ReasonUnauthorized).
	Reason    string `json:"reason,omitempty"`
	Endpoints int    `json:"endpoints"`
	Rotating  bool   `json:"rotating,omitempty"`
	// PersistedAt is the save time of the persisted state the member is
	// served from (State persisted).
	PersistedAt time.Time `json:"persisted_at,omitzero"`
}

func (s *Source) nudge() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Set adds a member, or replaces the configuration of one with the same name
// (a rotated credential): the new connection is made, synced, and only then
// does it replace the old one, so no endpoint disappears in between. Run
// starts the new member's watcher.
func (s *Source) Set(cfg MemberConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := NewMember(cfg, s.log, s.nudge)
	if err != nil {
		return err
	}
	m.metrics = s.metrics
	sl, ok := s.slots[cfg.Name]
	if !ok {
		sl = &slot{initial: s.published == nil}
		s.slots[cfg.Name] = sl
	}
	r := &running{m: m}
	if sl.cur == nil {
		sl.cur = r
	} else {
		if sl.next != nil {
			s.stopLocked(sl.next)
		}
		sl.next = r
		s.log.Info("member cluster rotating", "cluster", cfg.Name, "origin", cfg.Origin)
	}
	s.nudge()
	return nil
}

// refreshLocked starts a fresh watcher of a member whose API server answers
// again after an outage: it lists at once, and replaces the current watcher
// once synced, as a rotation does (the current one keeps serving the last
// known state until then). The current watcher's informers would otherwise
// catch up only when client-go's list/watch backoff, up to 30 s with as much
// jitter, lets them retry.
func (s *Source) refreshLocked(name string, sl *slot) {
	m, err := NewMember(sl.cur.m.cfg, s.log, s.nudge)
	if err != nil {
		s.log.Error("member cluster reachable again, but a fresh watcher cannot be made; the current one catches up after its backoff", "cluster", name, "error", err)
		return
	}
	m.metrics = s.metrics
	sl.next = &running{m: m}
	s.log.Info("member cluster reachable again; relisting it with a fresh watcher", "cluster", name)
	s.nudge()
}

// Remove stops watching a member and drops it from the ClusterSet.
func (s *Source) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, ok := s.slots[name]
	if !ok {
		return
	}
	for _, r := range []*running{sl.cur, sl.next} {
		if r != nil {
			s.stopLocked(r)
		}
	}
	delete(s.slots, name)
	s.metrics.removed(name)
	s.log.Info("member cluster removed", "cluster", name)
	s.nudge()
}

// start starts the watcher of every member that Set added since the last
// call, under ctx; wg counts the watchers.
func (s *Source) start(ctx context.Context, wg *sync.WaitGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sl := range s.slots {
		for _, r := range []*running{sl.cur, sl.next} {
			if r == nil || r.cancel != nil {
				continue
			}
			mctx, cancel := context.WithCancel(ctx)
			r.cancel = cancel
			wg.Go(func() {
				if err := r.m.Run(mctx); err != nil {
					s.log.Error("member cluster watcher ended", "cluster", r.m.cfg.Name, "error", err)
				}
			})
		}
	}
}

// stopLocked cancels a member; its goroutines end on their own. A member
// that was never started is dropped with its slot and never starts.
func (s *Source) stopLocked(r *running) {
	if r.cancel != nil {
		r.cancel()
	}
}

// Run starts the members' watchers, and those of members Set adds while it
// runs, and publishes ClusterSets until ctx is done; then it stops every
// member and waits for their watchers to end. Call it once.
func (s *Source) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	s.mu.Lock()
	s.started = time.Now()
	s.mu.Unlock()
	if s.persist != nil {
		wg.Go(func() { s.persist.run(ctx) })
	}
	s.start(ctx, &wg)

	ttl := time.NewTicker(time.Second)
	defer ttl.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
			s.start(ctx, &wg)
			s.loadStates()
			s.publish()
		case <-ttl.C:
			s.loadStates()
			s.publish() // staleness gauges, TTL expiry
		}
	}
}

// publish builds a ClusterSet from every member and hands it on if it changed.
func (s *Source) publish() {
	s.mu.Lock()
	// Finish rotations whose new member has synced.
	for name, sl := range s.slots {
		if sl.next != nil && sl.next.m.HasSynced() {
			s.stopLocked(sl.cur)
			sl.cur, sl.next = sl.next, nil
			s.log.Info("member cluster rotated", "cluster", name)
		}
	}
	var clusters []discovery.Cluster
	var live []liveMember
	waiting := []string{}
	for name, sl := range s.slots {
		m := sl.cur.m
		st := m.State()
		var staleFor time.Duration
		if st == Stale {
			staleFor = time.Since(m.StaleSince())
		}
		if sl.wasStale && st == Synced && sl.next == nil {
			s.refreshLocked(name, sl)
		}
		sl.wasStale = st == Stale
		apiProblems := m.APIProblems()
		if !m.HasSynced() {
			s.reportProblems(name, apiProblems)
			if sl.persisted != nil {
				clusters = append(clusters, s.fromPersisted(name, sl.persisted, m.LastEvent()))
				continue
			}
			s.metrics.setState(name, st, m.LastEvent(), staleFor)
			if sl.initial {
				waiting = append(waiting, name)
			}
			continue
		}
		s.metrics.setState(name, st, m.LastEvent(), staleFor)
		if sl.persisted != nil {
			s.log.Info("member cluster synced; its live state replaces the persisted one", "cluster", name)
			sl.persisted = nil
		}
		c, problems, lag := m.Snapshot()
		s.reportProblems(name, append(slices.Clip(problems), apiProblems...))
		if lag > 0 {
			s.metrics.lag(name, lag)
		}
		if s.staleTTL > 0 && staleFor > s.staleTTL {
			// Expired: the cluster stays a member, without endpoints.
			for i := range c.Services {
				c.Services[i].Endpoints = nil
			}
			s.metrics.expired(name)
		}
		c.Stale = st == Stale
		if st == Synced {
			live = append(live, liveMember{name: name, id: c.Name, server: m.cfg.Rest.Host})
		}
		n := 0
		for _, svc := range c.Services {
			n += len(svc.Endpoints)
		}
		s.metrics.endpointsSet(name, n)
		clusters = append(clusters, c)
	}
	if len(waiting) > 0 && s.published == nil {
		slices.Sort(waiting)
		s.mu.Unlock()
		s.log.Debug("waiting for the initial sync", "clusters", waiting)
		return
	}
	for _, c := range DropAliasConflicts(clusters) {
		s.log.Warn("alias claimed twice", "cluster", c.Cluster, "service", c.Loser.String(), "alias", c.Alias, "owner", c.Winner.String())
		s.metrics.invalidObject(c.Cluster, "Service", "alias_conflict")
	}
	cs, err := discovery.New(clusters)
	if err != nil {
		s.mu.Unlock()
		s.log.Error("member clusters do not form a ClusterSet; the last one keeps serving", "error", err)
		s.metrics.invalidObject("", "ClusterSet", "merge")
		return
	}
	if s.published != nil && s.published.Version() == cs.Version() {
		s.offerState(s.published, live)
		s.mu.Unlock()
		if s.onChange != nil {
			s.onChange()
		}
		return
	}
	s.published = cs
	s.offerState(cs, live)
	s.mu.Unlock()
	if s.onUpdate != nil {
		s.onUpdate(cs)
	}
	if s.onChange != nil {
		s.onChange()
	}
}

// offerState hands the live members' states to the persister.
func (s *Source) offerState(cs *discovery.ClusterSet, live []liveMember) {
	if s.persist != nil {
		s.persist.put(&stateOffer{cs: cs, live: live, at: time.Now()})
	}
}

// loadStates reads, once each, the persisted states of the members
// configured at start that have not synced within SyncWait, outside the
// lock (a store may be an API server). A missing or unusable state is logged
// once, and that member waits as without a store.
func (s *Source) loadStates() {
	if s.state == nil {
		return
	}
	type due struct {
		name string
		sl   *slot
		cfg  MemberConfig
	}
	var todo []due
	s.mu.Lock()
	if time.Since(s.started) >= s.syncWait {
		for name, sl := range s.slots {
			if sl.initial && !sl.loaded && !sl.cur.m.HasSynced() {
				sl.loaded = true
				todo = append(todo, due{name, sl, sl.cur.m.cfg})
			}
		}
	}
	s.mu.Unlock()
	for _, d := range todo {
		ps, err := s.state.Load(d.name)
		if err == nil && ps != nil {
			err = ps.checkIdentity(d.cfg.Rest.Host, s.trustDomain, d.cfg.Network)
		}
		switch {
		case err != nil && stateReason(err) == StateIO:
			// The store did not answer (an API server may be slow to start):
			// asked again on the next round, logged once.
			s.metrics.stateLoadFailed(StateIO)
			s.mu.Lock()
			d.sl.loaded = false
			d.sl.loadFails++
			first := d.sl.loadFails == 1
			s.mu.Unlock()
			if first {
				s.log.Warn("member cluster has not synced and its persisted state cannot be read; retrying, waiting for it meanwhile", "cluster", d.name, "error", err)
			}
			continue
		case err != nil:
			s.metrics.stateLoadFailed(stateReason(err))
			s.log.Warn("member cluster has not synced and its persisted state is refused; waiting for it", "cluster", d.name, "wait", s.syncWait, "error", err)
			continue
		case ps == nil:
			s.log.Warn("member cluster has not synced and has no persisted state; waiting for it", "cluster", d.name, "wait", s.syncWait)
			continue
		}
		s.mu.Lock()
		if s.slots[d.name] == d.sl && !d.sl.cur.m.HasSynced() {
			s.log.Warn("member cluster has not synced; serving its persisted state, marked stale, until it does", "cluster", d.name, "wait", s.syncWait, "saved", ps.Saved, "origin", ps.Origin)
			d.sl.persisted = ps
		}
		s.mu.Unlock()
	}
}

// fromPersisted is a member's part of the ClusterSet from its persisted
// state: stale since the state was saved, expired past the TTL as a live
// stale member would be.
func (s *Source) fromPersisted(name string, ps *MemberState, lastEvent time.Time) discovery.Cluster {
	c := ps.Cluster.Clone()
	c.Stale = true
	staleFor := time.Since(ps.Saved)
	s.metrics.setState(name, Persisted, lastEvent, staleFor)
	if s.staleTTL > 0 && staleFor > s.staleTTL {
		for i := range c.Services {
			c.Services[i].Endpoints = nil
		}
		s.metrics.expired(name)
	}
	n := 0
	for _, svc := range c.Services {
		n += len(svc.Endpoints)
	}
	s.metrics.endpointsSet(name, n)
	return c
}

// reportProblems logs problems the first time they are seen and keeps the
// per-kind counts current.
func (s *Source) reportProblems(cluster string, problems []Problem) {
	seen := map[string]bool{}
	counts := map[[2]string]int{}
	for _, p := range problems {
		text := p.String()
		seen[text] = true
		counts[[2]string{p.Kind, p.Reason}]++
		if !s.problems[cluster][text] {
			s.log.Warn("object skipped", "cluster", cluster, "kind", p.Kind, "namespace", p.Namespace, "name", p.Name, "reason", p.Reason, "detail", p.Message)
		}
	}
	if !reflect.DeepEqual(seen, s.problems[cluster]) {
		s.problems[cluster] = seen
		s.metrics.problems(cluster, counts)
	}
}

// Ready reports whether a ClusterSet with every initially configured member
// has been published.
func (s *Source) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.published != nil
}

// Members lists every configured member, sorted by name.
func (s *Source) Members() []MemberStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []MemberStatus
	for name, sl := range s.slots {
		m := sl.cur.m
		st := MemberStatus{
			Name: name, ID: m.ID(), Network: m.cfg.Network, Origin: m.cfg.Origin, State: m.State(),
			LastEvent: m.LastEvent(), StaleSince: m.StaleSince(), Rotating: sl.next != nil,
		}
		if st.State == Stale || st.State == Syncing {
			st.Reason = m.Reason()
		}
		switch {
		case !m.HasSynced() && sl.persisted != nil:
			st.State, st.StaleSince, st.PersistedAt = Persisted, sl.persisted.Saved, sl.persisted.Saved
		case !m.HasSynced():
			st.State = Syncing
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b MemberStatus) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Member returns the member currently serving a name, for the MCS controller.
func (s *Source) Member(name string) (*Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, ok := s.slots[name]
	if !ok || !sl.cur.m.HasSynced() {
		return nil, false
	}
	return sl.cur.m, true
}

// SyncedMembers returns every member that has synced, sorted by name.
func (s *Source) SyncedMembers() []*Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Member
	for _, sl := range s.slots {
		if sl.cur.m.HasSynced() {
			out = append(out, sl.cur.m)
		}
	}
	slices.SortFunc(out, func(a, b *Member) int { return cmp.Compare(a.cfg.Name, b.cfg.Name) })
	return out
}
