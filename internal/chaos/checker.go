package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Violation is one broken invariant.
type Violation struct {
	Invariant string // I1, I3, ...
	Proxy     string
	Resource  string
	At        time.Time
	Detail    string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s %s %s at %s: %s", v.Invariant, v.Proxy, v.Resource, v.At.Format("15:04:05.000"), v.Detail)
}

// Violations collects what the checks found, from any goroutine.
type Violations struct {
	mu   sync.Mutex
	list []Violation
}

// Add records a violation.
func (vs *Violations) Add(inv, proxy, resource string, at time.Time, detail string) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.list = append(vs.list, Violation{inv, proxy, resource, at, detail})
}

// List returns every violation so far.
func (vs *Violations) List() []Violation {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	return append([]Violation(nil), vs.list...)
}

// Ledger is what the harness removed from members, so that I1 can tell an
// endpoint that left a view for a reason from one that was lost.
type Ledger struct {
	mu      sync.Mutex
	addrs   map[string]bool // endpoint host:port removed
	members map[string]bool // members with any removal
	removed map[string]bool // members removed altogether
	owner   func(addr string) (member string, gateway bool)
}

// RemoveEndpoints records that endpoints (host:port) of member are about to
// be deleted.
func (l *Ledger) RemoveEndpoints(member string, addrs ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range addrs {
		l.addrs[a] = true
	}
	l.members[member] = true
}

// RemoveMember records that member is about to be removed.
func (l *Ledger) RemoveMember(member string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.members[member] = true
	l.removed[member] = true
}

// Allows reports whether addr may leave a view: it was removed, its member
// was, or it is the gateway of a member that lost endpoints.
func (l *Ledger) Allows(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addrs[addr] {
		return true
	}
	m, gw := l.owner(addr)
	return l.removed[m] || (gw && l.members[m])
}

// Checker compares every recorder with the oracle continuously: every
// Interval it lists the members (keeping a member's last listing while its
// apiserver does not answer: Horizon keeps serving it, and so must the
// views), and records an I3 violation for every proxy whose view has
// differed from the oracle for longer than Bound.
type Checker struct {
	env      *Env
	Interval time.Duration
	Bound    time.Duration

	mu        sync.Mutex
	last      map[string]Objects // member -> last listing
	since     map[*Recorder]time.Time
	reported  map[*Recorder]bool
	samples   int
	divergent int // samples × proxies that differed (within the bound or not)
}

// Run samples until ctx is done.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		c.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Expected returns the oracle's view for each network, from the latest
// listings.
func (c *Checker) Expected(ctx context.Context) map[string]View {
	c.mu.Lock()
	defer c.mu.Unlock()
	var objs []Objects
	for _, m := range c.env.Members {
		if c.env.removed(m.Name) {
			continue
		}
		if o, err := listMember(ctx, m); err == nil {
			c.last[m.Name] = o
		}
		if o, ok := c.last[m.Name]; ok {
			objs = append(objs, o)
		}
	}
	out := map[string]View{}
	for _, m := range c.env.Members {
		out[m.Network] = Oracle(objs, m.Network)
	}
	return out
}

// listMember lists a member for the oracle. A member whose apiserver is
// down (connection refused) is not listed: the caller keeps its last
// listing, as Horizon keeps serving it. Any other failure (a loaded
// apiserver timing out) is retried for up to 30 s: falling back to the last
// listing then would make the oracle expect a state older than the one
// Horizon rightly serves.
func listMember(ctx context.Context, m *Member) (Objects, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		o, err := m.List(lctx)
		cancel()
		if err == nil || errors.Is(err, syscall.ECONNREFUSED) || ctx.Err() != nil || time.Now().After(deadline) {
			return o, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Sample compares every checked recorder with the oracle once.
func (c *Checker) Sample(ctx context.Context) {
	want := c.Expected(ctx)
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.samples++
	for _, r := range c.env.recorders() {
		if r.Behaviour != ACK || c.env.removed(r.ID.Cluster) {
			continue
		}
		got, _ := r.View()
		d := Diff(got, want[r.ID.Network])
		if d == "" {
			delete(c.since, r)
			delete(c.reported, r)
			continue
		}
		c.divergent++
		if _, ok := c.since[r]; !ok {
			c.since[r] = now
		}
		if now.Sub(c.since[r]) > c.Bound && !c.reported[r] {
			c.reported[r] = true
			c.env.Violations.Add("I3", r.ID.ID, "view", c.since[r], fmt.Sprintf("differs from the oracle for over %v: %s", c.Bound, d))
		}
	}
}

// Converged waits until every checked recorder equals the oracle and
// returns how long that took, or an error naming one that does not.
func (c *Checker) Converged(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		want := c.Expected(ctx)
		var bad string
		for _, r := range c.env.recorders() {
			if r.Behaviour != ACK || c.env.removed(r.ID.Cluster) {
				continue
			}
			got, _ := r.View()
			if d := Diff(got, want[r.ID.Network]); d != "" {
				bad = r.ID.ID + ": " + d
				break
			}
		}
		if bad == "" {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("not converged within %v: %s", timeout, bad)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ownerOf maps the suite's addresses to members: 10.I.S.E:port is an
// endpoint of member mI, 198.51.100.(I+1):port its gateway.
func ownerOf(addr string) (string, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", false
	}
	b := ap.Addr().As4()
	if strings.HasPrefix(addr, "198.51.100.") {
		return fmt.Sprintf("m%d", int(b[3])-1), true
	}
	return fmt.Sprintf("m%d", b[1]), false
}
