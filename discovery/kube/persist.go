package kube

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/horizonmesh/horizon/discovery"
)

// Defaults of the persisted member state (SourceOptions).
const (
	DefaultSyncWait      = 10 * time.Second
	DefaultStateDebounce = time.Second
	DefaultStateRefresh  = time.Minute
)

// liveMember is a member whose API server answers, and so whose part of the
// ClusterSet is its current state.
type liveMember struct {
	name, id, server string
}

// stateOffer is what the Source last published, and which of its members
// were live then.
type stateOffer struct {
	cs   *discovery.ClusterSet
	live []liveMember
	at   time.Time
}

// persister writes the states of live members to a StateStore: at most once
// per debounce interval, only a member whose content changed or whose last
// save is older than refresh (the save time is when the state was last known
// current; staleness after a restart counts from it). It runs in one
// goroutine owned by Source.Run and never blocks the Source: publish only
// replaces the offer.
type persister struct {
	store             StateStore
	log               *slog.Logger
	metrics           *Metrics
	trustDomain       string
	debounce, refresh time.Duration

	mu    sync.Mutex
	offer *stateOffer

	// Owned by run's goroutine.
	saved map[string]savedState
	last  *discovery.ClusterSet // the ClusterSet of the last flush
}

type savedState struct {
	sum [32]byte
	at  time.Time
}

func (p *persister) put(o *stateOffer) {
	p.mu.Lock()
	p.offer = o
	p.mu.Unlock()
}

// run flushes until ctx is done, then once more.
func (p *persister) run(ctx context.Context) {
	p.saved = map[string]savedState{}
	t := time.NewTicker(p.debounce)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.flush()
			return
		case <-t.C:
			p.flush()
		}
	}
}

func (p *persister) flush() {
	p.mu.Lock()
	o := p.offer
	p.mu.Unlock()
	if o == nil {
		return
	}
	changed := o.cs != p.last
	p.last = o.cs
	for _, lm := range o.live {
		prev, ok := p.saved[lm.name]
		if !changed && ok && o.at.Sub(prev.at) < p.refresh {
			continue
		}
		c, ok := o.cs.Cluster(lm.id)
		if !ok {
			continue
		}
		b, err := json.Marshal(c)
		if err != nil {
			p.log.Error("cannot encode a member's state", "cluster", lm.name, "error", err)
			continue
		}
		sum := sha256.Sum256(b)
		if prev.sum == sum && o.at.Sub(prev.at) < p.refresh {
			continue
		}
		s := &MemberState{Member: lm.name, Server: lm.server, TrustDomain: p.trustDomain, Saved: o.at, Cluster: *c}
		err = p.store.Save(s)
		if errors.Is(err, ErrNotWriter) {
			// Another replica writes. Try again on a change or after
			// refresh: a new leader writes within that.
			p.saved[lm.name] = savedState{sum: sum, at: o.at}
			continue
		}
		if err != nil {
			p.log.Warn("cannot save a member's state; a restart while it is down would wait for it", "cluster", lm.name, "error", err)
			p.metrics.stateSaveFailed(lm.name)
			continue
		}
		p.saved[lm.name] = savedState{sum: sum, at: o.at}
		p.metrics.stateSaved(lm.name, o.at)
	}
}
