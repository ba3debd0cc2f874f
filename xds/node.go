package xds

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/discovery"
)

// Role is what kind of proxy a node is.
type Role string

// Roles a proxy can declare in its ROLE metadata.
const (
	Sidecar   Role = "sidecar"
	Gateway   Role = "gateway"
	Proxyless Role = "proxyless"
)

// Node metadata keys: the contract a proxy's bootstrap fulfils (README).
const (
	MetaClusterID      = "CLUSTER_ID"
	MetaNetwork        = "NETWORK"
	MetaNamespace      = "NAMESPACE"
	MetaServiceAccount = "SERVICE_ACCOUNT"
	MetaRole           = "ROLE"
	// MetaLabels is the workload's labels, a string map (as Istio's Envoy
	// bootstrap writes them): the proxy side of label keys in failoverPriority.
	MetaLabels = "LABELS"
)

// Proxy is what Horizon knows about one connected node, from its metadata.
type Proxy struct {
	ID             string
	Role           Role
	Cluster        string
	Network        string
	Namespace      string
	ServiceAccount string
	Locality       discovery.Locality
	// Declared is the locality the node declared when the ClusterSet does
	// not know it in the proxy's cluster and Resolve clamped it (Locality is
	// then the nearest known one); zero otherwise.
	Declared discovery.Locality
	// Labels are the workload's labels (LABELS); nil when it declares none.
	Labels map[string]string
}

// Group is the view a proxy gets: proxies with equal groups receive the same
// resources, computed and marshalled once.
type Group struct {
	Role     Role
	Cluster  string
	Network  string
	Locality discovery.Locality
	// Labels holds the proxy's values of the label keys the policy ranks on
	// (Policy.LabelKeys), canonically "k1=v1,k2=v2" sorted by key; a key the
	// proxy does not declare, or declares empty, is left out. "" when the
	// policy ranks on no label, so that views multiply only by the values
	// of the labels in use.
	Labels string
}

// String renders the group for logs and debug pages.
func (g Group) String() string {
	s := string(g.Role) + "~" + g.Cluster + "~" + g.Network + "~" + g.Locality.String()
	if g.Labels != "" {
		s += "~" + g.Labels
	}
	return s
}

// labels returns the label values the group carries (nil for none).
func (g Group) labels() map[string]string {
	if g.Labels == "" {
		return nil
	}
	out := map[string]string{}
	for kv := range strings.SplitSeq(g.Labels, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// Group returns the proxy's view under a policy that ranks on no label:
// GroupFor(nil).
func (p *Proxy) Group() Group { return p.GroupFor(nil) }

// GroupFor returns the proxy's view under a policy that ranks on the given
// label keys (Policy.LabelKeys, sorted): the group carries the proxy's values
// of those keys only.
func (p *Proxy) GroupFor(labelKeys []string) Group {
	g := Group{Role: p.Role, Cluster: p.Cluster, Network: p.Network, Locality: p.Locality}
	var kvs []string
	for _, k := range slices.Sorted(slices.Values(labelKeys)) {
		if v := p.Labels[k]; v != "" {
			kvs = append(kvs, k+"="+v)
		}
	}
	g.Labels = strings.Join(kvs, ",")
	return g
}

// DeclaredGroupFor is GroupFor with the locality the proxy declared rather
// than the one Resolve clamped it to: what ViewKeys.Of reduces to a view,
// clamping it against the ClusterSet of the day.
func (p *Proxy) DeclaredGroupFor(labelKeys []string) Group {
	g := p.GroupFor(labelKeys)
	if p.Declared != (discovery.Locality{}) {
		g.Locality = p.Declared
	}
	return g
}

// ErrBadNode marks node metadata that is missing or malformed.
var ErrBadNode = errors.New("bad node metadata")

// ErrNetworkClaim marks a node whose NETWORK contradicts its cluster's.
var ErrNetworkClaim = errors.New("network contradicts the cluster's")

// ParseNode reads a node's metadata. It checks form only; whether the node may
// claim what it claims is decided against the ClusterSet (Resolve) and, on the
// mTLS port, against its credential.
func ParseNode(n *core.Node) (*Proxy, error) {
	if n == nil {
		return nil, fmt.Errorf("%w: no node in the first request", ErrBadNode)
	}
	if n.GetId() == "" {
		return nil, fmt.Errorf("%w: empty node id", ErrBadNode)
	}
	fields := n.GetMetadata().GetFields()
	str := func(key string) (string, error) {
		v, ok := fields[key]
		if !ok {
			return "", nil
		}
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return "", fmt.Errorf("%w: node %q: metadata %s must be a string", ErrBadNode, n.GetId(), key)
		}
		return s.StringValue, nil
	}
	p := &Proxy{ID: n.GetId()}
	var errs []error
	get := func(key string, dst *string, required bool) {
		v, err := str(key)
		switch {
		case err != nil:
			errs = append(errs, err)
		case v == "" && required:
			errs = append(errs, fmt.Errorf("%w: node %q: metadata %s is required", ErrBadNode, n.GetId(), key))
		case v != "" && !discovery.IsDNSLabel(v):
			errs = append(errs, fmt.Errorf("%w: node %q: metadata %s=%q is not a DNS label", ErrBadNode, n.GetId(), key, v))
		default:
			*dst = v
		}
	}
	var role string
	get(MetaClusterID, &p.Cluster, true)
	get(MetaNetwork, &p.Network, false)
	get(MetaNamespace, &p.Namespace, false)
	get(MetaServiceAccount, &p.ServiceAccount, false)
	get(MetaRole, &role, false)
	switch Role(role) {
	case Sidecar, Gateway, Proxyless:
		p.Role = Role(role)
	case "":
		if strings.HasPrefix(strings.ToLower(n.GetUserAgentName()), "grpc") {
			p.Role = Proxyless
		} else {
			p.Role = Sidecar
		}
	default:
		errs = append(errs, fmt.Errorf("%w: node %q: metadata ROLE=%q: want sidecar, gateway or proxyless", ErrBadNode, n.GetId(), role))
	}
	if v, ok := fields[MetaLabels]; ok {
		p.Labels, errs = parseLabels(n.GetId(), v, errs)
	}
	if l := n.GetLocality(); l != nil {
		p.Locality = localityOf(l)
		if p.Locality.Region == "" && p.Locality.Zone != "" {
			errs = append(errs, fmt.Errorf("%w: node %q: locality has a zone but no region", ErrBadNode, n.GetId()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// parseLabels reads the LABELS metadata: a struct of string values, each a
// Kubernetes label value, under non-empty keys without ',' or '='.
func parseLabels(id string, v *structpb.Value, errs []error) (map[string]string, []error) {
	st, ok := v.GetKind().(*structpb.Value_StructValue)
	if !ok {
		return nil, append(errs, fmt.Errorf("%w: node %q: metadata %s must be a map of strings", ErrBadNode, id, MetaLabels))
	}
	fields := st.StructValue.GetFields()
	out := make(map[string]string, len(fields))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		s, ok := fields[k].GetKind().(*structpb.Value_StringValue)
		switch {
		case k == "" || strings.ContainsAny(k, ",="):
			errs = append(errs, fmt.Errorf("%w: node %q: metadata %s: label name %q is not a label key", ErrBadNode, id, MetaLabels, k))
		case !ok:
			errs = append(errs, fmt.Errorf("%w: node %q: metadata %s[%s] must be a string", ErrBadNode, id, MetaLabels, k))
		case !discovery.IsLabelValue(s.StringValue): // keeps Group.Labels unambiguous: no ',' or '='
			errs = append(errs, fmt.Errorf("%w: node %q: metadata %s[%s]=%q is not a label value", ErrBadNode, id, MetaLabels, k, s.StringValue))
		default:
			out[k] = s.StringValue
		}
	}
	if len(out) == 0 {
		out = nil
	}
	return out, errs
}

// ResolveNode is what the server makes of a node: its metadata read
// (ParseNode), then checked against the ClusterSet and completed from its
// cluster (Resolve). Its view under a policy is GroupFor(policy.LabelKeys()).
func ResolveNode(n *core.Node, cs *discovery.ClusterSet) (*Proxy, error) {
	p, err := ParseNode(n)
	if err != nil {
		return nil, err
	}
	if err := p.Resolve(cs); err != nil {
		return nil, err
	}
	return p, nil
}

// Resolve checks the proxy's claims against the ClusterSet and fills in what
// the proxy left out (network, locality) from its cluster. A declared
// locality the ClusterSet does not know in the cluster is clamped to the
// nearest one it knows (ClusterSet.ClampLocality; the declared one is kept
// in Declared), so that proxies cannot make Horizon render views without
// bound.
func (p *Proxy) Resolve(cs *discovery.ClusterSet) error {
	c, ok := cs.Cluster(p.Cluster)
	if !ok {
		return fmt.Errorf("%w: node %q: CLUSTER_ID %q is not a member of the ClusterSet", ErrBadNode, p.ID, p.Cluster)
	}
	if p.Network == "" {
		p.Network = c.Network
	} else if p.Network != c.Network {
		return fmt.Errorf("%w: %w: node %q: NETWORK %q, but cluster %q is on network %q", ErrBadNode, ErrNetworkClaim, p.ID, p.Network, c.Name, c.Network)
	}
	if p.Locality == (discovery.Locality{}) {
		p.Locality = c.Locality
	} else if known := cs.ClampLocality(c.Name, p.Locality); known != p.Locality {
		p.Declared, p.Locality = p.Locality, known
	}
	return nil
}
