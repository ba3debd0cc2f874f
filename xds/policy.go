package xds

import (
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/discovery"
)

// Policy is the mesh-wide traffic policy a view is rendered with. The zero
// value is usable: trust domain cluster.local, default locality priorities.
type Policy struct {
	// TrustDomain of every workload's SPIFFE ID.
	TrustDomain spiffeid.TrustDomain
	// ConnectTimeout of upstream connections; 0 means 10s.
	ConnectTimeout time.Duration
}

// DefaultTrustDomain is used when a Policy names none.
var DefaultTrustDomain = spiffeid.RequireTrustDomainFromString("cluster.local")

func (p Policy) trustDomain() spiffeid.TrustDomain {
	if p.TrustDomain.IsZero() {
		return DefaultTrustDomain
	}
	return p.TrustDomain
}

func (p Policy) connectTimeout() time.Duration {
	if p.ConnectTimeout <= 0 {
		return 10 * time.Second
	}
	return p.ConnectTimeout
}

// priority ranks an endpoint's locality as seen from a proxy's: same zone,
// then same region, then everything else. Lower is preferred; the translator
// makes the levels in use contiguous.
func (p Policy) priority(from, to discovery.Locality) int {
	switch {
	case from.Region == "" || from.Region != to.Region:
		return 2
	case from.Zone != "" && from.Zone == to.Zone:
		return 0
	default:
		return 1
	}
}
