package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/horizonmesh/horizon/bench/gen"
	"github.com/horizonmesh/horizon/discovery"
)

// FleetConfig describes a fleet of simulated sidecars.
type FleetConfig struct {
	Address string `json:"address"` // Horizon's plaintext xDS address
	Proxies int    `json:"proxies"`
	// Conns is the number of gRPC connections the proxies' streams share
	// (round-robin); 0 means one per 50 proxies. A real Envoy has one each;
	// sharing keeps the client side's sockets and goroutines affordable.
	Conns int `json:"conns"`
	// DialOptions are added to the connections' (in-process fleets only).
	DialOptions []grpc.DialOption `json:"-"`
	Delta       bool              `json:"delta"`
	// Clusters are the member clusters proxies are spread over; empty means
	// those of a bench/gen ClusterSet with Networks × ClustersPerNetwork.
	Clusters           []ClusterRef `json:"clusters,omitempty"`
	Networks           int          `json:"networks"`
	ClustersPerNetwork int          `json:"clusters_per_network"`
	// ForgeSubZone has proxy i declare, in its zone, a sub-zone of its own
	// ("forged-<i>") that no endpoint has.
	ForgeSubZone bool `json:"forge_sub_zone,omitempty"`
}

// ClusterRef is a member cluster a proxy may claim: its name, network and
// the zones of its region that proxies are spread over.
type ClusterRef struct {
	Name       string               `json:"name"`
	Network    string               `json:"network"`
	Localities []discovery.Locality `json:"localities"`
}

// GenClusters lists the clusters of a bench/gen ClusterSet, with both zones
// of each.
func GenClusters(networks, clustersPerNetwork int) []ClusterRef {
	var out []ClusterRef
	for n := range networks {
		for c := range clustersPerNetwork {
			out = append(out, ClusterRef{
				Name: gen.ClusterName(n, c), Network: gen.NetworkName(n),
				Localities: []discovery.Locality{gen.Locality(n, 0), gen.Locality(n, 1)},
			})
		}
	}
	return out
}

// Identities spreads proxies over the clusters round-robin, and over each
// cluster's zones, so that every (cluster, zone) view has proxies.
func (c FleetConfig) Identities() []Identity {
	clusters := c.Clusters
	if len(clusters) == 0 {
		clusters = GenClusters(c.Networks, c.ClustersPerNetwork)
	}
	ids := make([]Identity, c.Proxies)
	for i := range ids {
		cl := clusters[i%len(clusters)]
		loc := discovery.Locality{}
		if len(cl.Localities) > 0 {
			loc = cl.Localities[(i/len(clusters))%len(cl.Localities)]
		}
		if c.ForgeSubZone {
			loc.SubZone = fmt.Sprintf("forged-%05d", i)
		}
		ns := gen.NamespaceName(0)
		ids[i] = Identity{
			ID:             fmt.Sprintf("sidecar-%05d.%s", i, ns),
			Cluster:        cl.Name,
			Network:        cl.Network,
			Namespace:      ns,
			ServiceAccount: fmt.Sprintf("client-%d", i%16),
			Locality:       loc,
		}
	}
	return ids
}

// Fleet runs P simulated proxies against one Horizon. A proxy whose stream
// fails reconnects after 50–150 ms, from nothing.
type Fleet struct {
	cfg     FleetConfig
	proxies []*Proxy

	mu     sync.Mutex
	cancel context.CancelFunc
	conns  []*grpc.ClientConn
	wg     sync.WaitGroup
}

// NewFleet returns a fleet that is not connected yet.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Proxies < 1 {
		return nil, errors.New("fleet: at least one proxy")
	}
	if len(cfg.Clusters) == 0 && (cfg.Networks < 1 || cfg.ClustersPerNetwork < 1) {
		return nil, errors.New("fleet: no clusters to spread proxies over")
	}
	if cfg.Conns <= 0 {
		cfg.Conns = (cfg.Proxies + 49) / 50
	}
	cfg.Conns = min(cfg.Conns, cfg.Proxies)
	f := &Fleet{cfg: cfg}
	for _, id := range cfg.Identities() {
		f.proxies = append(f.proxies, NewProxy(id, cfg.Delta))
	}
	return f, nil
}

// Proxies returns the fleet's proxies, in identity order (to Observe them
// before Start).
func (f *Fleet) Proxies() []*Proxy { return f.proxies }

// Start dials the connections and starts every proxy at once.
func (f *Fleet) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil {
		return errors.New("fleet: already started")
	}
	conns := make([]*grpc.ClientConn, f.cfg.Conns)
	for i := range conns {
		c, err := grpc.NewClient(f.cfg.Address, append([]grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))}, f.cfg.DialOptions...)...)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return fmt.Errorf("fleet: dial %s: %w", f.cfg.Address, err)
		}
		conns[i] = c
	}
	ctx, cancel := context.WithCancel(ctx)
	f.cancel, f.conns = cancel, conns
	for i, p := range f.proxies {
		conn := conns[i%len(conns)]
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for {
				_ = p.Run(ctx, conn)
				if ctx.Err() != nil {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(50*time.Millisecond + rand.N(100*time.Millisecond)):
				}
			}
		}()
	}
	return nil
}

// Stop ends every stream and closes the connections.
func (f *Fleet) Stop() {
	f.mu.Lock()
	cancel, conns := f.cancel, f.conns
	f.cancel, f.conns = nil, nil
	f.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	f.wg.Wait()
	for _, c := range conns {
		c.Close()
	}
}

// Storm drops every proxy's stream and connection at once and starts them
// all again from nothing, as after a rollout; sync counts start again from
// zero. It returns when the new
// streams are started (not synced: see WaitSynced) and when it started.
func (f *Fleet) Storm(ctx context.Context) (time.Time, error) {
	f.Stop()
	for _, p := range f.proxies {
		p.count(func(s *ProxyStats) { s.Syncs, s.SyncedAt = 0, 0 })
	}
	start := time.Now()
	return start, f.Start(ctx)
}

// Stats returns every proxy's record, in proxy order.
func (f *Fleet) Stats() []ProxyStats {
	out := make([]ProxyStats, len(f.proxies))
	for i, p := range f.proxies {
		out[i] = p.Stats()
	}
	return out
}

// poll calls done every 5 ms until it is true or ctx ends. Polling only
// decides when to stop waiting: what is measured are the times the proxies
// recorded themselves.
func poll(ctx context.Context, done func() bool) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// WaitSynced waits until every proxy has fully synced at least syncs
// streams, and returns the time the last one did.
func (f *Fleet) WaitSynced(ctx context.Context, syncs int) (int64, error) {
	err := poll(ctx, func() bool {
		for _, p := range f.proxies {
			if n, _ := p.synced(); n < syncs {
				return false
			}
		}
		return true
	})
	var last int64
	missing := 0
	for _, p := range f.proxies {
		st := p.Stats()
		if st.Syncs < syncs {
			missing++
		}
		last = max(last, st.SyncedAt)
	}
	if err != nil {
		return last, fmt.Errorf("fleet: %d of %d proxies not synced: %w", missing, len(f.proxies), err)
	}
	return last, nil
}

// Await waits until every proxy on one of networks has ACKed change
// marker's assignment, and returns the time the last one did.
func (f *Fleet) Await(ctx context.Context, marker int, networks []string) (int64, error) {
	var affected []*Proxy
	for _, p := range f.proxies {
		if slices.Contains(networks, p.id.Network) {
			affected = append(affected, p)
		}
	}
	err := poll(ctx, func() bool {
		for _, p := range affected {
			if !p.hasMarker(marker) {
				return false
			}
		}
		return true
	})
	var last int64
	missing := 0
	for _, p := range affected {
		p.mu.Lock()
		at, ok := p.stats.Markers[marker]
		p.mu.Unlock()
		if !ok {
			missing++
		}
		last = max(last, at)
	}
	if err != nil {
		return last, fmt.Errorf("fleet: change %d: %d of %d affected proxies did not ACK it: %w", marker, missing, len(affected), err)
	}
	return last, nil
}

// Locality builds a locality for a ClusterRef.
func Locality(region, zone string) discovery.Locality {
	return discovery.Locality{Region: region, Zone: zone}
}
