package policyfile

import (
	"fmt"
	"slices"
	"strings"

	"github.com/horizonmesh/horizon/discovery"
)

// Rank is where LocalityLB ranks an endpoint as seen from a proxy, and what
// decided it. LocalityLB.Priority and LocalityLB.Rank run the same
// comparison (rank), so the explanation (String, Brief, LocalityLB.Explain)
// is of the priority the renderer uses, never of a second ranking.
type Rank struct {
	// Priority is the endpoint's priority level; see LocalityLB.Priority.
	Priority int
	// Disabled is set when locality load balancing is off: every endpoint
	// is 0, and nothing else below is set.
	Disabled bool
	// Keys is the failoverPriority compared; Agreed is how many of its keys,
	// from the first, the proxy and the endpoint agree on.
	Keys   []Key
	Agreed int
	// ProxyValue and EndpointValue are the two values of the first key they
	// do not agree on, Keys[Agreed] (when Agreed < len(Keys)). An empty
	// ProxyValue never agrees.
	ProxyValue, EndpointValue string
	// Failover is the proxy region's failover entry when it ranked the
	// endpoint (InFailover: the endpoint is in another region, then
	// EndpointRegion), and FailoverIndex the place of that region in its To
	// (-1: not listed, after those listed).
	Failover       Failover
	InFailover     bool
	FailoverIndex  int
	EndpointRegion string
}

// Rank ranks an endpoint as seen from a proxy: Priority's result and why.
func (l LocalityLB) Rank(proxy, ep Attributes) Rank {
	r := Rank{FailoverIndex: -1}
	r.Priority = l.rank(proxy, ep, &r)
	return r
}

// rank is Priority, and Rank when why is not nil: one comparison for both,
// with nothing to fill in on the renderer's path.
func (l LocalityLB) rank(proxy, ep Attributes, why *Rank) int {
	if !l.Enabled {
		if why != nil {
			why.Disabled = true
		}
		return 0
	}
	n := len(l.FailoverPriority)
	matched := 0
	for _, k := range l.FailoverPriority {
		v := proxy.value(k)
		if v == "" || v != ep.value(k) {
			if why != nil {
				why.ProxyValue, why.EndpointValue = v, ep.value(k)
			}
			break
		}
		matched++
	}
	prio := n - matched
	if why != nil {
		why.Keys, why.Agreed = l.FailoverPriority, matched
	}
	if f, ok := l.FailoverFor(proxy.Locality.Region); ok && ep.Locality.Region != proxy.Locality.Region {
		i := slices.Index(f.To, ep.Locality.Region)
		if why != nil {
			why.Failover, why.InFailover, why.FailoverIndex, why.EndpointRegion = f, true, i, ep.Locality.Region
		}
		if i < 0 {
			i = len(f.To)
		}
		prio = n + i // region is the first key whenever failover is set
	}
	return prio
}

// String says why, key by key: the failoverPriority keys both agree on, the
// first they do not, and the endpoint region's place in the proxy region's
// failover list, e.g. "agrees on region; differs on zone (us-east-1b, not
// us-east-1a)".
func (r Rank) String() string {
	if r.Disabled {
		return "locality load balancing off"
	}
	out := ""
	if r.Agreed < len(r.Keys) {
		k := r.Keys[r.Agreed]
		if r.ProxyValue == "" {
			out = fmt.Sprintf("; the proxy has no %s", k)
		} else {
			out = fmt.Sprintf("; differs on %s (%s, not %s)", k, orNone(r.EndpointValue), r.ProxyValue)
		}
	}
	if r.Agreed == 0 {
		out = "shares no key" + out
	} else {
		agree := make([]string, r.Agreed)
		for i, k := range r.Keys[:r.Agreed] {
			agree[i] = string(k)
		}
		out = "agrees on " + strings.Join(agree, ", ") + out
	}
	if r.InFailover {
		if r.FailoverIndex >= 0 {
			out += fmt.Sprintf("; region %s is #%d in failover from %s", r.EndpointRegion, r.FailoverIndex+1, r.Failover.From)
		} else {
			out += fmt.Sprintf("; region %s is not in failover from %s, so after those listed", r.EndpointRegion, r.Failover.From)
		}
	}
	return out
}

// Brief says why in a few words, by the last key agreed on and the first
// not: "same zone", "same region, other zone", "other region (us-west)"
// for the built-in [region, zone].
func (r Rank) Brief() string {
	switch {
	case r.Disabled:
		return "locality load balancing off"
	case len(r.Keys) == 0:
		return "no ranking"
	case r.Agreed == len(r.Keys):
		return "same " + string(r.Keys[r.Agreed-1])
	case r.Agreed == 0:
		return "other " + string(r.Keys[0]) + " (" + r.EndpointValue + ")"
	}
	return "same " + string(r.Keys[r.Agreed-1]) + ", other " + string(r.Keys[r.Agreed])
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Explain says why an endpoint is where it is as seen from a proxy: in a
// share of the proxy locality's distribute entry, or after the shares, and
// its Rank.
func (l LocalityLB) Explain(proxy, ep Attributes) string {
	if !l.Enabled {
		return "locality load balancing off"
	}
	share := ""
	if d, ok := l.DistributeFor(proxy.Locality); ok {
		if i := d.ShareOf(ep.Locality); i >= 0 {
			return fmt.Sprintf("in distribute share %s (%d%%)", d.To[i].To, d.To[i].Weight)
		}
		share = "no distribute share, so after the shares: "
	}
	return share + l.Rank(proxy, ep).String()
}

// Describe says how l ranks endpoints for a proxy at a locality: its
// failoverPriority and failover regions, or its distribute shares and what
// comes after them.
func (l LocalityLB) Describe(proxy discovery.Locality) string {
	if !l.Enabled {
		return "locality load balancing off, one priority"
	}
	ranked := fmt.Sprintf("failoverPriority %v", l.FailoverPriority)
	if f, ok := l.FailoverFor(proxy.Region); ok {
		ranked += fmt.Sprintf(", then regions %v", f.To)
	}
	d, ok := l.DistributeFor(proxy)
	if !ok {
		return ranked
	}
	var shares []string
	for _, sh := range d.To {
		shares = append(shares, fmt.Sprintf("%s %d%%", sh.To, sh.Weight))
	}
	out := fmt.Sprintf("distribute from %s: %s in priority 0", d.From, strings.Join(shares, ", "))
	if l.RanksUnshared(proxy) {
		return out + "; every other locality after them, " + ranked
	}
	return out + "; no other locality (no failover or failoverPriority next to distribute)"
}

// ShareOf returns the index in To of the share whose pattern matches a
// locality (the first, in To's order), or -1 when none does.
func (d Distribute) ShareOf(l discovery.Locality) int {
	return slices.IndexFunc(d.To, func(s Share) bool { return s.To.Matches(l) })
}
