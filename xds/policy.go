package xds

import (
	"fmt"
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
	// SVIDProvider is where an Envoy sidecar gets its SVID and trust bundle
	// (the secrets named SecretDefault and SecretRootCA); "" means
	// SVIDFromAgent. Proxyless gRPC always reads them from files through its
	// certificate provider instance CertProviderInstance.
	SVIDProvider SVIDProvider
}

// SVIDProvider names the source of a sidecar's SVID and trust bundle.
type SVIDProvider string

// SVID providers.
const (
	// SVIDFromAgent: `horizon agent` writes svid.crt, svid.key and bundle.crt
	// into a directory, and the Envoy bootstrap declares them as static
	// secrets; Horizon's resources name the secrets without an sds_config.
	SVIDFromAgent SVIDProvider = "agent"
	// SVIDFromSPIRE: a SPIRE agent serves the secrets over SDS on a Unix
	// socket, reached through the bootstrap cluster SDSCluster.
	SVIDFromSPIRE SVIDProvider = "spire"
)

// ParseSVIDProvider reads a provider name as a flag gives it.
func ParseSVIDProvider(s string) (SVIDProvider, error) {
	switch p := SVIDProvider(s); p {
	case SVIDFromAgent, SVIDFromSPIRE:
		return p, nil
	case "":
		return SVIDFromAgent, nil
	}
	return "", fmt.Errorf("SVID provider %q: want %s or %s", s, SVIDFromAgent, SVIDFromSPIRE)
}

func (p Policy) svidProvider() SVIDProvider {
	if p.SVIDProvider == "" {
		return SVIDFromAgent
	}
	return p.SVIDProvider
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
