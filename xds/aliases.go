package xds

import (
	"net"
	"strconv"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/horizonmesh/horizon/discovery"
)

// Aliases (discovery/aliases.go) are extra names of a host: they reach the
// same Envoy cluster, under the same settings, as the host they stand for.
//
//   - A sidecar's route configuration of the port gives the host's virtual
//     host the aliases as domains too, alone and with the port: a request
//     whose Host (or :authority) is an alias is routed like one to the host.
//     A TCP port is matched by address, not name: an alias of a ClusterSetIP
//     service resolves (by the DNS record users add, see README) to the same
//     ClusterSet IP, whose listener the host has already.
//   - A proxyless gRPC client looks its listener up by the dial target's
//     host:port, so each alias gets an API listener of its own, alias:port,
//     pointing at the host's route configuration, whose virtual host holds
//     the aliases as domains: grpc-go picks the virtual host by the same
//     authority.

// localAliases returns the aliases a cluster.local host carries: its own
// cluster's definition's, when no cluster exports the service (an exported
// service's aliases stand for its clusterset.local host).
func (t *translator) localAliases(s *discovery.Service) []string {
	if _, exported := t.cs.Export(s.Key()); exported {
		return nil
	}
	return s.Aliases
}

// appendAliasDomains appends each alias, alone and with port p, to a
// virtual host's domains.
func appendAliasDomains(domains, aliases []string, p string) []string {
	for _, a := range aliases {
		domains = append(domains, a, a+":"+p)
	}
	return domains
}

// aliasListeners returns a proxyless client's API listener for each alias
// of h, named alias:port, routed by the host's route configuration (named
// target).
func aliasListeners(h *hostPort, target string) []*listener.Listener {
	if len(h.aliases) == 0 {
		return nil
	}
	out := make([]*listener.Listener, 0, len(h.aliases))
	for _, a := range h.aliases {
		l := apiListener(target)
		l.Name = net.JoinHostPort(a, strconv.Itoa(int(h.port.Port)))
		out = append(out, l)
	}
	return out
}
