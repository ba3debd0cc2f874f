package chaos

import (
	"fmt"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// View is what one proxy holds of the exported services: for each EDS
// cluster name, endpoint address:port -> load-balancing weight. Empty
// assignments are left out (an assignment with no endpoint and no
// assignment route nothing alike).
type View map[string]map[string]uint32

// ClusterSetName is the EDS cluster name of an exported service port, as the
// README's "Envoy names" section spells it.
func ClusterSetName(service, namespace string, port int32) string {
	return fmt.Sprintf("outbound_.%d_._.%s.%s.svc.clusterset.local", port, service, namespace)
}

// Oracle returns the view a sidecar on network must hold, from the members'
// objects alone. It follows the README's split-horizon rules, written
// separately from xds/ on purpose: every exporting member on the proxy's
// network contributes its ready endpoints directly (weight 1 each); every
// exporting member on another network contributes its network's gateway
// address, weighted by its ready mutual-TLS endpoints, if that network has a
// gateway. Localities are not set by the suite, so priorities are not
// compared. Scope: IPv4 slices, one port per service, ready endpoints only
// (the suite creates no others).
func Oracle(members []Objects, network string) View {
	gateways := map[string][]string{} // network -> gateway host:port
	for _, m := range members {
		for _, g := range m.Gateways {
			net := g.Labels["networking.horizon.io/gateway-network"]
			port := gatewayPort(g)
			for _, in := range g.Status.LoadBalancer.Ingress {
				if in.IP != "" && port != 0 {
					gateways[net] = append(gateways[net], netip.AddrPortFrom(netip.MustParseAddr(in.IP), uint16(port)).String())
				}
			}
		}
	}
	view := View{}
	add := func(name, addr string, w uint32) {
		if view[name] == nil {
			view[name] = map[string]uint32{}
		}
		view[name][addr] += w
	}
	for _, m := range members {
		mtls := map[string]bool{}
		for _, p := range m.Pods {
			mtls[p.Namespace+"/"+p.Name] = p.Labels["security.horizon.io/tlsMode"] == "mtls"
		}
		exported := map[string]bool{}
		for _, e := range m.Exports {
			exported[e.Namespace+"/"+e.Name] = true
		}
		for _, svc := range m.Services {
			if !exported[svc.Namespace+"/"+svc.Name] {
				continue
			}
			for _, sp := range svc.Spec.Ports {
				name := ClusterSetName(svc.Name, svc.Namespace, sp.Port)
				var direct []string
				crossing := 0
				for _, sl := range m.Slices {
					if sl.Namespace != svc.Namespace || sl.Labels["kubernetes.io/service-name"] != svc.Name {
						continue
					}
					port := int32(0)
					for _, p := range sl.Ports {
						if p.Name != nil && *p.Name == sp.Name && p.Port != nil {
							port = *p.Port
						}
					}
					if port == 0 {
						continue
					}
					for _, ep := range sl.Endpoints {
						if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
							continue
						}
						for _, a := range ep.Addresses {
							direct = append(direct, a+":"+strconv.Itoa(int(port)))
							if ep.TargetRef != nil && mtls[ep.TargetRef.Namespace+"/"+ep.TargetRef.Name] {
								crossing++
							}
						}
					}
				}
				if m.Network == network {
					for _, a := range direct {
						add(name, a, 1)
					}
					continue
				}
				gws := gateways[m.Network]
				if crossing == 0 || len(gws) == 0 {
					continue
				}
				// The suite gives each network one gateway address; with
				// several the remainder's placement is a hash the oracle
				// does not model.
				if len(gws) != 1 {
					panic(fmt.Sprintf("oracle: network %s has %d gateway addresses; the suite models one", m.Network, len(gws)))
				}
				add(name, gws[0], uint32(crossing))
			}
		}
	}
	return view
}

// gatewayPort is the gateway Service's port named "tls", else 15443, else
// its first port.
func gatewayPort(g corev1.Service) int32 {
	var first int32
	for i, p := range g.Spec.Ports {
		if p.Name == "tls" {
			return p.Port
		}
		if i == 0 {
			first = p.Port
		}
	}
	for _, p := range g.Spec.Ports {
		if p.Port == 15443 {
			return p.Port
		}
	}
	return first
}

// Diff describes how got differs from want, "" if they are equal.
func Diff(got, want View) string {
	var out string
	for name, w := range want {
		g := got[name]
		for a, wt := range w {
			if g[a] != wt {
				out += fmt.Sprintf("%s: %s weight %d, want %d; ", name, a, g[a], wt)
			}
		}
		for a, gt := range g {
			if _, ok := w[a]; !ok {
				out += fmt.Sprintf("%s: %s weight %d, want none; ", name, a, gt)
			}
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok && len(g) > 0 {
			out += fmt.Sprintf("%s: %d endpoints, want no assignment; ", name, len(g))
		}
	}
	return out
}
