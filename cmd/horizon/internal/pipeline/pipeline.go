// Package pipeline is the spine of `horizon serve`: the stages a ClusterSet
// passes through, in order, from the sources that discover it to the proxies
// that are served its views, and the long-lived parts around them.
//
//	sources: file.Watcher (a ClusterSet file) or kube.Source (member clusters)
//	   │ Publish (their OnUpdate), or Seed once at start
//	   ▼
//	0. workloads          workload.Registry: the workloads outside Kubernetes
//	   │                  (workload groups, registered instances) merged in
//	   │                  (optional; it republishes when they change)
//	   ▼
//	1. observers          see every ClusterSet as discovered, every gateway
//	   │                  included (the MCS controller's latest)
//	2. policy topology    policyfile.Watcher.SetTopology: the policy file is
//	   │                  checked against the ClusterSet it will be used with
//	2b. external DNS      resolve.Resolver: external services' DNS names
//	   │                  resolved for proxyless views (optional)
//	3. gateway health     health.Prober: the ClusterSet minus the gateways
//	   │                  that are down (optional; without it, straight on)
//	   ▼
//	4. views              server.Server: a view per proxy group, rendered,
//	                      checked and served over ADS (SotW and delta)
//
// A Pipeline owns that order: the sources are given Publish and nothing else,
// and the gateway prober's output is wired to the views here, so no stage can
// be skipped or run out of order. Every long-lived part (the views' render
// loop, the prober, the policy watcher, the sources, the MCS controller, the
// listeners) is Added and run by Run, which owns their goroutines: Run
// returns once every part has returned, after ctx is done or the first part
// has failed.
package pipeline

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/discovery/resolve"
	"github.com/horizonmesh/horizon/gateway/health"
)

// Views is the last stage: it renders and serves the views of each
// ClusterSet. *server.Server is one.
type Views interface {
	// Update takes a ClusterSet to render soon (debounced); it never blocks.
	Update(*discovery.ClusterSet)
	// Apply renders a ClusterSet at once and reports why it cannot.
	Apply(*discovery.ClusterSet) error
	Run(ctx context.Context) error
}

// Policy is told the topology of each ClusterSet, to check the policy file
// against. *policyfile.Watcher is one.
type Policy interface {
	SetTopology(policyfile.Topology)
	Run(ctx context.Context) error
}

// Config names the stages. Only Views is required.
type Config struct {
	Views Views
	// Policy, when set, checks the policy file against every ClusterSet.
	Policy Policy
	// Health, when set, probes the gateways and withdraws those that are
	// down; its Out is the views (any Out given is replaced).
	Health *health.Options
	// Observers see every ClusterSet first, as the sources publish it. They
	// are called on the sources' goroutines and must not block.
	Observers []func(*discovery.ClusterSet)
	// Resolve, when set, resolves external services' DNS names before
	// gateway health; its Out is the next stage (any Out given is replaced).
	Resolve *resolve.Options
	// Workloads, when set, merges the workloads outside Kubernetes into
	// every ClusterSet before the other stages see it.
	Workloads Workloads
}

// Workloads is the stage that merges workloads outside Kubernetes into
// each ClusterSet. *workload.Registry is one; New sets its output to the
// rest of the pipeline (SetOut).
type Workloads interface {
	// In takes a source's ClusterSet and hands the merged one on.
	In(*discovery.ClusterSet)
	// Merge merges at once (the first ClusterSet, Seed).
	Merge(*discovery.ClusterSet) (*discovery.ClusterSet, error)
	// SetOut sets where merged ClusterSets go, before Run.
	SetOut(func(*discovery.ClusterSet))
	Run(ctx context.Context) error
}

// Pipeline runs the stages of Config in order. Create it with New.
type Pipeline struct {
	views     Views
	policy    Policy
	prober    *health.Prober
	resolver  *resolve.Resolver
	observers []func(*discovery.ClusterSet)
	workloads Workloads

	mu      sync.Mutex
	parts   []part
	running bool
}

// part is a long-lived part Run runs.
type part struct {
	name string
	run  func(ctx context.Context) error
}

// New returns the pipeline of cfg, with the views, the prober and the
// policy watcher already added as parts.
func New(cfg Config) *Pipeline {
	if cfg.Views == nil {
		panic("pipeline.New: Config.Views is nil")
	}
	p := &Pipeline{views: cfg.Views, policy: cfg.Policy, observers: cfg.Observers, workloads: cfg.Workloads}
	p.Add("views", cfg.Views.Run)
	if p.workloads != nil {
		p.workloads.SetOut(p.publish)
		p.Add("workloads", p.workloads.Run)
	}
	if cfg.Health != nil {
		opts := *cfg.Health
		opts.Out = cfg.Views.Update
		p.prober = health.New(opts)
		p.Add("gateway health", p.prober.Run)
	}
	if cfg.Policy != nil {
		p.Add("policy", cfg.Policy.Run)
	}
	if cfg.Resolve != nil {
		opts := *cfg.Resolve
		opts.Out = p.afterResolve
		p.resolver = resolve.New(opts)
		p.Add("external dns", p.resolver.Run)
	}
	return p
}

// afterResolve takes a ClusterSet on from the external DNS stage.
func (p *Pipeline) afterResolve(cs *discovery.ClusterSet) {
	if p.prober != nil {
		p.prober.In(cs) // calls Views.Update with what it lets through
		return
	}
	p.views.Update(cs)
}

// Prober is the gateway health stage, nil without one (for debug pages).
func (p *Pipeline) Prober() *health.Prober { return p.prober }

// Publish takes a ClusterSet from a source through the stages: it is the
// sources' OnUpdate. It never blocks on a render or a probe.
func (p *Pipeline) Publish(cs *discovery.ClusterSet) {
	if cs == nil {
		return
	}
	if p.workloads != nil {
		p.workloads.In(cs) // calls publish with the merged ClusterSet
		return
	}
	p.publish(cs)
}

// publish takes a ClusterSet with its workloads through the other stages.
func (p *Pipeline) publish(cs *discovery.ClusterSet) {
	p.enter(cs)
	if p.resolver != nil {
		p.resolver.In(cs) // calls afterResolve
		return
	}
	p.afterResolve(cs)
}

// Seed takes the first ClusterSet through the stages and renders its views
// before returning, so that a server listens with views ready (a file
// source's first load). Gateway health then starts probing; nothing is
// withdrawn before a probe fails.
func (p *Pipeline) Seed(cs *discovery.ClusterSet) error {
	if p.workloads != nil {
		merged, err := p.workloads.Merge(cs)
		if merged == nil {
			return fmt.Errorf("initial ClusterSet: workloads: %w", err)
		}
		cs = merged
	}
	p.enter(cs)
	if err := p.views.Apply(cs); err != nil {
		return fmt.Errorf("initial ClusterSet: %w", err)
	}
	if p.resolver != nil {
		p.resolver.In(cs) // resolves, then on to gateway health and the views
		return nil
	}
	if p.prober != nil {
		p.prober.In(cs)
	}
	return nil
}

// enter runs the stages before gateway health.
func (p *Pipeline) enter(cs *discovery.ClusterSet) {
	for _, o := range p.observers {
		o(cs)
	}
	if p.policy != nil {
		p.policy.SetTopology(policyfile.TopologyOf(cs))
	}
}

// Add registers a long-lived part for Run: run must return once ctx is done
// (nil then) or when it fails. Parts start in the order they are added.
func (p *Pipeline) Add(name string, run func(ctx context.Context) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		panic("pipeline.Add: " + name + " added after Run started")
	}
	p.parts = append(p.parts, part{name, run})
}

// Run runs every part until ctx is done or one of them fails, and returns
// once all have returned: nil after ctx is done, else the first failure,
// named by its part. Run must be called once.
func (p *Pipeline) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		panic("pipeline.Run called twice")
	}
	p.running = true
	parts := p.parts
	p.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	for _, pt := range parts {
		g.Go(func() error {
			if err := pt.run(gctx); err != nil {
				return fmt.Errorf("%s: %w", pt.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}
