package mcs

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
)

// The labels and annotations of the MCS EndpointSlices Horizon writes.
const (
	// LabelServiceName names the ServiceImport an MCS EndpointSlice belongs
	// to; LabelSourceCluster the cluster its endpoints are in (KEP-1645).
	LabelServiceName   = kube.LabelMCSServiceName
	LabelSourceCluster = kube.LabelMCSSourceCluster
	// ControllerName is Horizon's value of discoveryv1.LabelManagedBy on the
	// slices it writes. Horizon updates and deletes no other slices.
	ControllerName = "mcs-controller.horizon.io"

	// AnnotationEndpointsLeftOut, on a ServiceImport, counts the endpoints
	// of the service left out of that cluster's EndpointSlices because they
	// are on another network (split horizon);
	// AnnotationEndpointsLeftOutReason says whose and why. Both are absent
	// when nothing is left out.
	AnnotationEndpointsLeftOut       = "networking.horizon.io/endpoints-left-out"
	AnnotationEndpointsLeftOutReason = "networking.horizon.io/endpoints-left-out-reason"

	// DefaultMaxEndpointsPerSlice is the default of
	// SliceConfig.MaxEndpoints, as Kubernetes' own EndpointSlice controller.
	DefaultMaxEndpointsPerSlice = 100
)

// SliceConfig configures the MCS EndpointSlices the controller writes in
// every importing member.
type SliceConfig struct {
	// Disabled stops the controller from writing (or deleting) slices.
	Disabled bool
	// MaxEndpoints per slice, 1 to 1000 (default DefaultMaxEndpointsPerSlice).
	MaxEndpoints int
}

// SliceState is one EndpointSlice a member holds, as the slice planner
// needs it.
type SliceState struct {
	Namespace, Name string
	// Managed is whether Horizon manages the slice (ControllerName). Only
	// the names of the others matter: they are never touched.
	Managed bool
	// Service and Source are its LabelServiceName and LabelSourceCluster.
	Service, Source string
	Family          discoveryv1.AddressType
	// Ports is the slice's port signature (see portSignature), Addresses
	// the first address of each endpoint.
	Ports     string
	Addresses []string
}

// SliceMemberState is what DesiredSlices needs of one member cluster.
type SliceMemberState struct {
	ID         string
	Namespaces []string
	Slices     []SliceState
}

// Slice is an MCS EndpointSlice one member should hold: its labels, address
// type, endpoints and ports (everything else is left to the server).
type Slice struct {
	Ref
	Service, Source string
	Family          discoveryv1.AddressType
	Endpoints       []discoveryv1.Endpoint // sorted by address
	Ports           []discoveryv1.EndpointPort
}

// Labels are the labels of a Horizon slice.
func (s *Slice) Labels() map[string]string {
	return map[string]string{
		LabelServiceName:           s.Service,
		LabelSourceCluster:         s.Source,
		discoveryv1.LabelManagedBy: ControllerName,
		LabelManagedBy:             ManagedByHorizon,
	}
}

// LeftOut is what split horizon left out of one member's slices of one
// service: Count endpoints, Reason says whose. Count 0 clears the
// annotations.
type LeftOut struct {
	Ref    // the ServiceImport
	Count  int
	Reason string
}

// SlicePlan is every member's desired MCS EndpointSlices. Everything is
// sorted by (cluster, namespace, name).
type SlicePlan struct {
	Writes []Slice
	// Deletes are Horizon's slices nobody wants: the service is no longer
	// exported, its source left, the endpoints moved, or the namespace went.
	Deletes []Ref
	LeftOut []LeftOut
}

// DesiredSlices computes the MCS EndpointSlices of every member: for every
// exported service, in every member with the namespace (exporting ones
// included) whose ServiceImport is not foreign, one set of slices per
// exporting cluster and address family, holding that cluster's endpoints
// when it is on the member's network (split horizon: others are counted in
// LeftOut). Endpoints stay in the slice that holds them; new ones fill the
// first slices with room, so a change of one endpoint changes one slice.
// It depends on nothing but its arguments.
func DesiredSlices(cs *discovery.ClusterSet, members []SliceMemberState, foreign []Ref, maxPerSlice int) SlicePlan {
	var plan SlicePlan
	if cs == nil {
		return plan
	}
	if maxPerSlice <= 0 {
		maxPerSlice = DefaultMaxEndpointsPerSlice
	}
	isForeign := map[Ref]bool{}
	for _, r := range foreign {
		isForeign[r] = true
	}
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b SliceMemberState) int { return cmp.Compare(a.ID, b.ID) })
	for _, m := range members {
		self, known := cs.Cluster(m.ID)
		if !known {
			// Not in the ClusterSet (yet): its network is unknown, so
			// neither write nor delete anything there.
			continue
		}
		namespaces := map[string]bool{}
		for _, ns := range m.Namespaces {
			namespaces[ns] = true
		}
		type group struct {
			ns, svc, src string
			family       discoveryv1.AddressType
		}
		existing := map[group][]SliceState{}
		taken := map[string]bool{} // namespace/name of every slice
		for _, s := range m.Slices {
			taken[s.Namespace+"/"+s.Name] = true
			if s.Managed {
				g := group{s.Namespace, s.Service, s.Source, s.Family}
				existing[g] = append(existing[g], s)
			}
		}
		claimed := map[group]bool{}
		for i := range cs.Exports {
			es := &cs.Exports[i]
			ref := Ref{m.ID, es.Key.Namespace, es.Key.Name}
			if !namespaces[es.Key.Namespace] || isForeign[ref] {
				continue
			}
			lo := LeftOut{Ref: ref}
			var reasons []string
			for _, src := range es.Clusters {
				c, ok := cs.Cluster(src)
				if !ok {
					continue
				}
				svc, ok := c.Service(es.Key)
				if !ok {
					continue
				}
				if c.Network != self.Network {
					if n := len(svc.Endpoints); n > 0 {
						lo.Count += n
						reasons = append(reasons, fmt.Sprintf("%d of cluster %s on network %s", n, src, c.Network))
					}
					continue
				}
				byFamily := map[discoveryv1.AddressType][]endpoint{}
				for j := range svc.Endpoints {
					ep := &svc.Endpoints[j]
					fam := familyOf(ep.Address)
					if fam == "" {
						continue
					}
					ports := endpointPorts(svc, ep)
					byFamily[fam] = append(byFamily[fam], endpoint{ep: sliceEndpoint(ep), ports: ports, sig: portSignature(ports)})
				}
				for _, fam := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
					g := group{es.Key.Namespace, es.Key.Name, src, fam}
					eps := byFamily[fam]
					if len(eps) == 0 {
						continue // existing ones are deleted below
					}
					claimed[g] = true
					base := sliceBase(es.Key.Name, src, fam)
					free := func(name string) bool { return !taken[es.Key.Namespace+"/"+name] }
					writes, deletes := assign(existing[g], eps, maxPerSlice, base, free)
					for _, w := range writes {
						w.Ref = Ref{m.ID, es.Key.Namespace, w.Name}
						w.Service, w.Source, w.Family = es.Key.Name, src, fam
						plan.Writes = append(plan.Writes, w)
					}
					for _, d := range deletes {
						plan.Deletes = append(plan.Deletes, Ref{m.ID, es.Key.Namespace, d})
					}
				}
			}
			if lo.Count > 0 {
				lo.Reason = fmt.Sprintf("%d endpoints are on other networks (%s) and reachable only through their east-west gateways",
					lo.Count, strings.Join(reasons, ", "))
			}
			plan.LeftOut = append(plan.LeftOut, lo)
		}
		for g, ss := range existing {
			if claimed[g] {
				continue
			}
			for _, s := range ss {
				plan.Deletes = append(plan.Deletes, Ref{m.ID, s.Namespace, s.Name})
			}
		}
	}
	slices.SortFunc(plan.Writes, func(a, b Slice) int { return compareRef(a.Ref, b.Ref) })
	slices.SortFunc(plan.Deletes, compareRef)
	slices.SortFunc(plan.LeftOut, func(a, b LeftOut) int { return compareRef(a.Ref, b.Ref) })
	return plan
}

// endpoint is one endpoint on its way into a slice.
type endpoint struct {
	ep    discoveryv1.Endpoint
	ports []discoveryv1.EndpointPort
	sig   string
}

// slot is one slice being filled.
type slot struct {
	name string
	sig  string
	eps  []endpoint
	ok   bool // holds something this round
}

// assign distributes one group's endpoints over its slices: an endpoint
// stays in the slice that lists it while the slice's ports still fit and it
// has room; the others fill, in address order, the first slices with the
// same ports and room, then empty slices (taking the new ports), then new
// slices named base-N with the lowest free N. Slices left empty are deleted.
func assign(existing []SliceState, eps []endpoint, maxPerSlice int, base string, free func(string) bool) (writes []Slice, deletes []string) {
	existing = slices.Clone(existing)
	slices.SortFunc(existing, func(a, b SliceState) int { return compareSliceNames(a.Name, b.Name) })
	slots := make([]*slot, 0, len(existing))
	where := map[string]int{} // address -> slot index
	for i, s := range existing {
		slots = append(slots, &slot{name: s.Name, sig: s.Ports})
		for _, a := range s.Addresses {
			if _, dup := where[a]; !dup {
				where[a] = i
			}
		}
	}
	eps = slices.Clone(eps)
	slices.SortFunc(eps, func(a, b endpoint) int { return cmp.Compare(a.ep.Addresses[0], b.ep.Addresses[0]) })
	var rest []endpoint
	for _, e := range eps {
		if i, ok := where[e.ep.Addresses[0]]; ok && slots[i].sig == e.sig && len(slots[i].eps) < maxPerSlice {
			slots[i].eps = append(slots[i].eps, e)
			continue
		}
		rest = append(rest, e)
	}
	used := map[string]bool{}
	for _, s := range slots {
		used[s.name] = true
	}
	next := 0
	for _, e := range rest {
		var target *slot
		for _, s := range slots {
			if len(s.eps) > 0 && s.sig == e.sig && len(s.eps) < maxPerSlice {
				target = s
				break
			}
		}
		if target == nil {
			for _, s := range slots {
				if len(s.eps) == 0 {
					target = s
					target.sig = e.sig
					break
				}
			}
		}
		if target == nil {
			name := ""
			for ; ; next++ {
				name = sliceName(base, next)
				if !used[name] && free(name) {
					break
				}
			}
			used[name] = true
			target = &slot{name: name, sig: e.sig}
			slots = append(slots, target)
		}
		target.eps = append(target.eps, e)
	}
	for _, s := range slots {
		if len(s.eps) == 0 {
			deletes = append(deletes, s.name)
			continue
		}
		slices.SortFunc(s.eps, func(a, b endpoint) int { return cmp.Compare(a.ep.Addresses[0], b.ep.Addresses[0]) })
		w := Slice{Ref: Ref{Name: s.name}, Ports: s.eps[0].ports}
		for _, e := range s.eps {
			w.Endpoints = append(w.Endpoints, e.ep)
		}
		writes = append(writes, w)
	}
	return writes, deletes
}

// compareSliceNames orders base-2 before base-10.
func compareSliceNames(a, b string) int {
	ia, ib := strings.LastIndexByte(a, '-'), strings.LastIndexByte(b, '-')
	if ia >= 0 && ib >= 0 && a[:ia] == b[:ib] {
		na, ea := strconv.Atoi(a[ia+1:])
		nb, eb := strconv.Atoi(b[ib+1:])
		if ea == nil && eb == nil {
			return cmp.Compare(na, nb)
		}
	}
	return cmp.Compare(a, b)
}

// familyOf is the slice address type of an endpoint address, or "" for an
// address no EndpointSlice may hold (the API server's rules: no zone, no
// IPv4-mapped IPv6, not unspecified, loopback or link-local), which is left
// out rather than failing its whole slice's write on every round.
func familyOf(address string) discoveryv1.AddressType {
	a, err := netip.ParseAddr(address)
	switch {
	case err != nil || a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsLoopback() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return ""
	case a.Is4():
		return discoveryv1.AddressTypeIPv4
	default:
		return discoveryv1.AddressTypeIPv6
	}
}

// sliceEndpoint is a model endpoint as an MCS slice lists it: its address,
// hostname, zone and conditions.
func sliceEndpoint(ep *discovery.Endpoint) discoveryv1.Endpoint {
	ready, serving, terminating := ep.Ready, ep.Serving, ep.Terminating
	out := discoveryv1.Endpoint{
		Addresses:  []string{ep.Address},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
	}
	if ep.Hostname != "" {
		h := ep.Hostname
		out.Hostname = &h
	}
	if ep.Locality.Zone != "" {
		z := ep.Locality.Zone
		out.Zone = &z
	}
	return out
}

// endpointPorts are the ports of an endpoint, by name, in the order of its
// cluster's Service.
func endpointPorts(svc *discovery.Service, ep *discovery.Endpoint) []discoveryv1.EndpointPort {
	out := make([]discoveryv1.EndpointPort, 0, len(svc.Ports))
	for _, p := range svc.Ports {
		name, proto, port := p.Name, corev1Protocol(p.Protocol), int32(ep.TargetPort(p))
		ep := discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &port}
		if p.AppProtocol != "" {
			ap := p.AppProtocol
			ep.AppProtocol = &ap
		}
		out = append(out, ep)
	}
	slices.SortStableFunc(out, func(a, b discoveryv1.EndpointPort) int { return cmp.Compare(*a.Name, *b.Name) })
	return out
}

// portSignature identifies a slice's ports: endpoints with different ports
// go in different slices.
func portSignature(ps []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%s/%s/%d/%s;", deref(p.Name), deref(p.Protocol), deref(p.Port), deref(p.AppProtocol))
	}
	return b.String()
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// sliceBase is the deterministic stem of a group's slice names:
// <service>-<cluster>-<ipv4|ipv6>, made a valid name, and shortened with a
// hash when too long.
func sliceBase(service, cluster string, fam discoveryv1.AddressType) string {
	base := strings.ToLower(service + "-" + cluster + "-" + string(fam))
	base = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, base)
	if len(base) > 200 {
		sum := sha256.Sum256([]byte(base))
		base = strings.TrimRight(base[:190], "-.") + "-" + hex.EncodeToString(sum[:4])
	}
	return base
}

func sliceName(base string, n int) string { return base + "-" + strconv.Itoa(n) }

func corev1Protocol(p string) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return corev1.Protocol(p)
}
