package xds

import (
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
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
	// File is the checked policy file (horizon serve --policy): per-service
	// locality priorities and weights, cluster weights and pins, the
	// failover threshold, connect timeout, outlier detection and retries.
	// nil renders the built-in behaviour: priorities by [region, zone],
	// ConnectTimeout, no outlier detection, no retries.
	File *policyfile.File
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

// TrustDomainOrDefault is the policy's trust domain, DefaultTrustDomain when
// it names none.
func (p Policy) TrustDomainOrDefault() spiffeid.TrustDomain {
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

// builtinLocality is the locality ranking without a policy file: same zone,
// then same region, then everything else.
var builtinLocality = policyfile.LocalityLB{Enabled: true, FailoverPriority: []policyfile.Key{policyfile.KeyRegion, policyfile.KeyZone}}

// envoyOverprovisioning is Envoy's default overprovisioning factor: an
// assignment that would carry it says nothing, so that its bytes (and
// version) do not change.
const envoyOverprovisioning = 140

// settings returns the traffic settings of a service as reached by a host of
// the given scope: the policy file's when there is one, else the built-in
// behaviour with ConnectTimeout.
func (p Policy) settings(k discovery.ServiceKey, scope discovery.Scope) policyfile.Settings {
	if p.File != nil {
		return p.File.Lookup(k, scope)
	}
	return policyfile.Settings{
		ConnectTimeout:         p.connectTimeout(),
		OverprovisioningFactor: envoyOverprovisioning,
		Locality:               builtinLocality,
	}
}

// HostSettings returns the traffic settings a host name's service is
// rendered with (the defaults for a name that is no service's host): what
// `horizon explain` explains.
func (p Policy) HostSettings(host string) policyfile.Settings {
	k, scope, err := discovery.ParseHost(host)
	if err != nil && p.File != nil {
		return p.File.Defaults
	}
	return p.settings(k, scope)
}

// defaultConnectTimeout is the connect timeout of clusters that belong to no
// service (passthrough, and the gateway's): the policy file's defaults, else
// ConnectTimeout.
func (p Policy) defaultConnectTimeout() time.Duration {
	if p.File != nil {
		return p.File.Defaults.ConnectTimeout
	}
	return p.connectTimeout()
}

// Version names the policy file the resources are rendered with, "" for none.
func (p Policy) Version() string {
	if p.File == nil {
		return ""
	}
	return p.File.Version
}

// LabelKeys returns the label keys (not topology keys) that failoverPriority
// ranks on anywhere in the policy file, sorted and distinct: what a Group
// carries of a proxy's labels. It is nil without a file, or when no enabled
// locality setting lists a label.
func (p Policy) LabelKeys() []string {
	if p.File == nil {
		return nil
	}
	var keys []string
	add := func(l policyfile.LocalityLB) {
		if !l.Enabled {
			return
		}
		for _, k := range l.FailoverPriority {
			if k.IsLabel() {
				keys = append(keys, string(k))
			}
		}
	}
	add(p.File.Defaults.Locality)
	for _, r := range p.File.Rules {
		add(r.Settings.Locality)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}
