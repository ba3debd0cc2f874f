package mcs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/ratelog"
)

// LeaseName is the default name of the Lease the controller's replicas elect
// their one writer with.
const LeaseName = "horizon-mcs-controller"

// Election configures the leader election among replicas.
type Election struct {
	// Client reaches the control-plane cluster that holds the Lease (a
	// kubernetes.Interface's CoordinationV1()). Nil disables election: the
	// controller always writes, which is only right with one replica.
	Client    coordinationv1client.LeasesGetter
	Namespace string // the Lease's namespace; required with Client
	Name      string // default LeaseName
	// Identity names this replica in the Lease (default: host name and a
	// random suffix).
	Identity string
	// Durations, default 15s, 10s and 2s as in Kubernetes' controllers.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Config configures a Controller.
type Config struct {
	// Members returns the member clusters to read and write, each synced.
	Members func() []Member
	// ClusterSet returns the latest published ClusterSet (nil before the
	// first): it decides what is exported and how.
	ClusterSet func() *discovery.ClusterSet
	// Allocator hands out ClusterSet IPs (default: DefaultCIDR).
	Allocator *Allocator
	Election  Election
	// Resync is how often the leader reconciles without being notified
	// (default 10s); RetryDelay how soon after a failed write (default 1s,
	// doubling while rounds keep failing, up to Resync); WriteTimeout
	// bounds each write (default 10s).
	Resync, RetryDelay, WriteTimeout time.Duration
	Logger                           *slog.Logger
	Metrics                          *Metrics
	// Slices configures the MCS EndpointSlices written in importing
	// members (slices.go).
	Slices SliceConfig
}

// Controller keeps the members' ServiceExport statuses and ServiceImports in
// line with the ClusterSet. Every replica can run one; only the leader writes.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	kick   chan struct{}
	leader atomic.Bool
	// election records the Lease lock's failures (election.go).
	election *electionWatch
	// written remembers, per member, what this controller wrote while the
	// member's caches catch up. Only the reconcile loop uses it, as it does
	// reported: the problems already logged, so each is logged once.
	written  map[string]*memo
	reported map[string]bool
	slices   sliceRun
}

// New checks the configuration and fills in defaults.
func New(cfg Config) (*Controller, error) {
	if cfg.Members == nil || cfg.ClusterSet == nil {
		return nil, errors.New("mcs controller: needs Members and ClusterSet")
	}
	if cfg.Allocator == nil {
		a, err := NewAllocator()
		if err != nil {
			return nil, err
		}
		cfg.Allocator = a
	}
	e := &cfg.Election
	if e.Client != nil {
		if e.Namespace == "" {
			return nil, errors.New("mcs controller: leader election needs the Lease's namespace")
		}
		if e.Name == "" {
			e.Name = LeaseName
		}
		if e.Identity == "" {
			host, _ := os.Hostname()
			e.Identity = host + "_" + rand.Text()[:8]
		}
		e.LeaseDuration = positiveOr(e.LeaseDuration, 15*time.Second)
		e.RenewDeadline = positiveOr(e.RenewDeadline, 10*time.Second)
		e.RetryPeriod = positiveOr(e.RetryPeriod, 2*time.Second)
		if e.LeaseDuration <= e.RenewDeadline || e.RenewDeadline <= e.RetryPeriod*6/5 {
			return nil, fmt.Errorf("mcs controller: leader election needs LeaseDuration (%v) > RenewDeadline (%v) > 1.2 × RetryPeriod (%v)", e.LeaseDuration, e.RenewDeadline, e.RetryPeriod)
		}
	}
	cfg.Resync = positiveOr(cfg.Resync, 10*time.Second)
	cfg.RetryDelay = positiveOr(cfg.RetryDelay, time.Second)
	cfg.WriteTimeout = positiveOr(cfg.WriteTimeout, 10*time.Second)
	if cfg.Slices.MaxEndpoints == 0 {
		cfg.Slices.MaxEndpoints = DefaultMaxEndpointsPerSlice
	}
	if cfg.Slices.MaxEndpoints < 1 || cfg.Slices.MaxEndpoints > 1000 {
		return nil, fmt.Errorf("mcs controller: endpoints per slice %d is not in 1..1000", cfg.Slices.MaxEndpoints)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "mcs")
	return &Controller{
		cfg:     cfg,
		log:     log,
		kick:    make(chan struct{}, 1),
		written: map[string]*memo{},
		election: &electionWatch{
			warn: ratelog.New(log, electionWarnEvery), metrics: cfg.Metrics,
			status: ElectionStatus{Enabled: e.Client != nil, Namespace: e.Namespace, Name: e.Name, Identity: e.Identity},
		},
	}, nil
}

// positiveOr is d, or def when d is not positive (cmp.Or would keep a
// negative d).
func positiveOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Notify asks for a reconcile round soon. It never blocks; calls coalesce.
func (c *Controller) Notify() {
	c.slices.markChanged()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// IsLeader reports whether this replica currently writes.
func (c *Controller) IsLeader() bool { return c.leader.Load() }

// Identity is this replica's name in the Lease ("" without election).
func (c *Controller) Identity() string { return c.cfg.Election.Identity }

// ElectionStatus reports the leader election: whether this replica leads
// and, while it cannot take or keep the Lease, why.
func (c *Controller) ElectionStatus() ElectionStatus {
	s := c.election.snapshot()
	s.Leader = c.IsLeader()
	return s
}

// Run campaigns for the Lease and, while leading, reconciles on every Notify
// and every Resync, until ctx is done. Losing the Lease stops the writes and
// starts a new campaign. When ctx ends, the writes stop first and then the
// Lease is released, so another replica takes over at once.
func (c *Controller) Run(ctx context.Context) error {
	if c.cfg.Election.Client == nil {
		c.lead(ctx)
		return nil
	}
	for ctx.Err() == nil {
		if err := c.campaign(ctx); err != nil {
			return err
		}
	}
	return nil
}

// campaign runs one leader election until this replica has led and lost (or
// given up) the Lease, or ctx is done.
func (c *Controller) campaign(ctx context.Context) error {
	e := c.cfg.Election
	// The election outlives ctx until the writes have stopped: releasing
	// the Lease any earlier could let another replica write alongside.
	electCtx, endElection := context.WithCancel(context.WithoutCancel(ctx))
	defer endElection()

	var (
		mu      sync.Mutex
		leading bool
		over    bool
		terms   sync.WaitGroup
	)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name},
		Client:     e.Client,
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            watchedLock{Interface: lock, watch: c.election},
		Name:            e.Name,
		LeaseDuration:   e.LeaseDuration,
		RenewDeadline:   e.RenewDeadline,
		RetryPeriod:     e.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leaseCtx context.Context) {
				mu.Lock()
				if over {
					mu.Unlock()
					return
				}
				leading = true
				terms.Add(1)
				mu.Unlock()
				defer terms.Done()
				// Write while the Lease is held and ctx is not done; then end
				// the election, releasing the Lease.
				termCtx, cancel := context.WithCancel(leaseCtx)
				stop := context.AfterFunc(ctx, cancel)
				c.log.Info("leading: writing ServiceExport statuses and ServiceImports", "identity", e.Identity)
				c.lead(termCtx)
				stop()
				cancel()
				endElection()
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("mcs controller: leader election: %w", err)
	}
	// While campaigning, ctx ending ends the election; while leading, the
	// term ends it once the writes have stopped.
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !leading {
			endElection()
		}
	})
	defer stop()
	le.Run(electCtx)
	mu.Lock()
	over = true
	mu.Unlock()
	terms.Wait()
	if leading {
		c.log.Info("stopped leading", "identity", e.Identity)
	}
	return nil
}

// lead reconciles until ctx is done.
func (c *Controller) lead(ctx context.Context) {
	c.leader.Store(true)
	c.cfg.Metrics.setLeader(true)
	c.slices.changed.Store(0) // the first round writes whatever changed while following
	defer func() {
		c.leader.Store(false)
		c.cfg.Metrics.setLeader(false)
	}()
	resync := time.NewTicker(c.cfg.Resync)
	defer resync.Stop()
	retry := time.NewTimer(c.cfg.RetryDelay)
	retry.Stop()
	defer retry.Stop()
	// A round with a failed write is retried after RetryDelay, doubling
	// while rounds keep failing (an unreachable member), up to Resync.
	delay := c.cfg.RetryDelay
	for ctx.Err() == nil {
		if c.reconcile(ctx) || ctx.Err() != nil {
			delay = c.cfg.RetryDelay
		} else {
			retry.Reset(delay)
			delay = min(2*delay, c.cfg.Resync)
		}
		select {
		case <-ctx.Done():
		case <-c.kick:
		case <-resync.C:
		case <-retry.C:
		}
	}
}

// reconcile runs one round: compute the plan, write the differences. It
// reports whether every write succeeded.
func (c *Controller) reconcile(ctx context.Context) bool {
	cs := c.cfg.ClusterSet()
	if cs == nil {
		return true // nothing published yet: nothing is known
	}
	members := c.cfg.Members()
	states := make([]MemberState, 0, len(members))
	byID := make(map[string]Member, len(members))
	for _, m := range members {
		states = append(states, State(m))
		byID[m.ID()] = m
	}
	plan := Desired(cs, states, c.cfg.Allocator)
	c.cfg.Metrics.setExports(plan)
	c.report(plan)
	ok := c.apply(ctx, plan, byID)
	ok = c.reconcileSlices(ctx, cs, plan.Foreign, members) && ok
	c.cfg.Metrics.round(ok)
	return ok
}

// report logs the plan's problems and the foreign imports in the way, each
// once while it lasts.
func (c *Controller) report(plan Plan) {
	now := map[string]bool{}
	for _, p := range plan.Problems {
		now["problem "+p] = true
		if !c.reported["problem "+p] {
			c.log.Warn("ClusterSet IP allocation failed", "detail", p)
		}
	}
	for _, r := range plan.Foreign {
		now["foreign "+r.String()] = true
		if !c.reported["foreign "+r.String()] {
			c.log.Warn("ServiceImport is managed by someone else; left alone", "cluster", r.Cluster, "namespace", r.Namespace, "name", r.Name)
		}
	}
	c.reported = now
}
