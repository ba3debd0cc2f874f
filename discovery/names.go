package discovery

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"
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

// XDSTypeName names an xDS resource type, given its type URL, in every metric
// label and log attribute: "cds", "eds", "lds", "rds" or "sds", after the
// discovery service that serves it; "other" for any other type, so that a
// label set stays bounded whatever type URL a client sends.
func XDSTypeName(typeURL string) string {
	switch typeURL {
	case "type.googleapis.com/envoy.config.cluster.v3.Cluster":
		return "cds"
	case "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment":
		return "eds"
	case "type.googleapis.com/envoy.config.listener.v3.Listener":
		return "lds"
	case "type.googleapis.com/envoy.config.route.v3.RouteConfiguration":
		return "rds"
	case "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret":
		return "sds"
	}
	return "other"
}

// IsDNSLabel reports whether s is an RFC 1123 label, as Kubernetes names of
// namespaces and services are: lower-case letters, digits and '-', starting
// and ending with a letter or digit, at most 63 bytes.
func IsDNSLabel(s string) bool { return len(validation.IsDNS1123Label(s)) == 0 }

// IsDNSName reports whether s is a lower-case DNS name: dot-separated RFC 1123
// labels (IsDNSLabel), at most 253 bytes in all, as Kubernetes names of service
// accounts are. Unlike validation.IsDNS1123Subdomain it holds every label to
// 63 bytes, as DNS does.
func IsDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !IsDNSLabel(l) {
			return false
		}
	}
	return true
}

// IsLabelKey reports whether s is a Kubernetes label key
// (validation.IsQualifiedName: an optional DNS subdomain prefix and "/", then a
// name of at most 63 letters, digits, '-', '_' and '.', starting and ending
// with a letter or digit) whose prefix is an IsDNSName.
func IsLabelKey(s string) bool {
	if len(validation.IsQualifiedName(s)) > 0 {
		return false
	}
	prefix, _, ok := strings.Cut(s, "/")
	return !ok || IsDNSName(prefix)
}

// IsLabelValue reports whether s is a Kubernetes label value: empty, or at
// most 63 letters, digits, '-', '_' and '.', starting and ending with a letter
// or digit. Such a value holds no ',' or '='.
func IsLabelValue(s string) bool { return len(validation.IsValidLabelValue(s)) == 0 }

// WorkloadID returns the SPIFFE ID of a workload's service account.
func WorkloadID(td spiffeid.TrustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
}
