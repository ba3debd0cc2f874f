package discovery

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Scope says which endpoints a host name covers.
type Scope int

// Host scopes, as the MCS API defines them.
const (
	// ClusterLocal is <svc>.<ns>.svc.cluster.local: the caller's own cluster only.
	ClusterLocal Scope = iota
	// ClusterSetWide is <svc>.<ns>.svc.clusterset.local: every exporting cluster.
	ClusterSetWide
)

// Domain suffixes of the two scopes.
const (
	ClusterLocalDomain = "cluster.local"
	ClusterSetDomain   = "clusterset.local"
)

// Host returns the DNS name of a service in a scope.
func Host(k ServiceKey, s Scope) string {
	domain := ClusterLocalDomain
	if s == ClusterSetWide {
		domain = ClusterSetDomain
	}
	return k.Name + "." + k.Namespace + ".svc." + domain
}

// ClusterName returns the Envoy cluster name for a host and port. It is also
// the SNI that a cross-network connection to that host and port carries, in
// the Istio-compatible form outbound_.<port>_._.<host>, so that a gateway can
// route the still-encrypted connection by it.
func ClusterName(host string, port uint32) string {
	return "outbound_." + strconv.Itoa(int(port)) + "_._." + host
}

// SNI is the server name of a cross-network connection; see ClusterName.
func SNI(host string, port uint32) string { return ClusterName(host, port) }

// ParseClusterName splits a name made by ClusterName into its host and port.
func ParseClusterName(name string) (host string, port uint32, err error) {
	rest, ok := strings.CutPrefix(name, "outbound_.")
	if !ok {
		return "", 0, fmt.Errorf("cluster name %q: missing outbound_. prefix", name)
	}
	p, host, ok := strings.Cut(rest, "_._.")
	if !ok || host == "" {
		return "", 0, fmt.Errorf("cluster name %q: want outbound_.<port>_._.<host>", name)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("cluster name %q: bad port %q", name, p)
	}
	return host, uint32(n), nil
}

// ParseHost splits a host made by Host into its service key and scope.
func ParseHost(host string) (ServiceKey, Scope, error) {
	var scope Scope
	rest, ok := strings.CutSuffix(host, ".svc."+ClusterSetDomain)
	if ok {
		scope = ClusterSetWide
	} else if rest, ok = strings.CutSuffix(host, ".svc."+ClusterLocalDomain); !ok {
		return ServiceKey{}, 0, fmt.Errorf("host %q: not a service host", host)
	}
	name, ns, ok := strings.Cut(rest, ".")
	if !ok || name == "" || ns == "" || strings.Contains(ns, ".") {
		return ServiceKey{}, 0, fmt.Errorf("host %q: want <svc>.<ns>.svc.<domain>", host)
	}
	return ServiceKey{Namespace: ns, Name: name}, scope, nil
}

// WorkloadID returns the SPIFFE ID of a workload's service account.
func WorkloadID(td spiffeid.TrustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
}
