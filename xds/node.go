package xds

import (
	"errors"
	"fmt"
	"regexp"
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
}

// Group is the view a proxy gets: proxies with equal groups receive the same
// resources, computed and marshalled once.
type Group struct {
	Role     Role
	Cluster  string
	Network  string
	Locality discovery.Locality
}

// String renders the group for logs and debug pages.
func (g Group) String() string {
	return string(g.Role) + "~" + g.Cluster + "~" + g.Network + "~" + g.Locality.String()
}

// Group returns the proxy's view.
func (p *Proxy) Group() Group {
	return Group{Role: p.Role, Cluster: p.Cluster, Network: p.Network, Locality: p.Locality}
}

// ErrBadNode marks node metadata that is missing or malformed.
var ErrBadNode = errors.New("bad node metadata")

var label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

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
		case v != "" && !label.MatchString(v):
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
	if l := n.GetLocality(); l != nil {
		p.Locality = discovery.Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()}
		if p.Locality.Region == "" && p.Locality.Zone != "" {
			errs = append(errs, fmt.Errorf("%w: node %q: locality has a zone but no region", ErrBadNode, n.GetId()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// Resolve checks the proxy's claims against the ClusterSet and fills in what
// the proxy left out (network, locality) from its cluster.
func (p *Proxy) Resolve(cs *discovery.ClusterSet) error {
	c, ok := cs.Cluster(p.Cluster)
	if !ok {
		return fmt.Errorf("%w: node %q: CLUSTER_ID %q is not a member of the ClusterSet", ErrBadNode, p.ID, p.Cluster)
	}
	if p.Network == "" {
		p.Network = c.Network
	} else if p.Network != c.Network {
		return fmt.Errorf("%w: node %q: NETWORK %q, but cluster %q is on network %q", ErrBadNode, p.ID, p.Network, c.Name, c.Network)
	}
	if p.Locality == (discovery.Locality{}) {
		p.Locality = c.Locality
	}
	return nil
}
