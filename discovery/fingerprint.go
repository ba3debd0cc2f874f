package discovery

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
)

// Digest is a content hash.
type Digest [16]byte

// ServiceDigest returns the content hash of one cluster's share of a
// service: the service as the cluster defines it (ports, endpoints and all
// their fields) together with the cluster's own attributes (name, network,
// locality, gateways, staleness, ServiceImport IPs). Equal digests mean
// equal content, so a translator may reuse what it rendered from the same
// digests before. ok is false when the cluster does not define the service.
func (cs *ClusterSet) ServiceDigest(cluster string, k ServiceKey) (d Digest, ok bool) {
	d, ok = cs.digests[cluster][k]
	return d, ok
}

// fingerprint hashes a canonical, length-prefixed encoding of the
// ClusterSet, and records the digest of every cluster's share of every
// service on the way (ServiceDigest): the version is a hash of those. Every
// list it walks is already sorted; maps are encoded in key order. It runs
// on every change, so it encodes into one reused buffer and allocates
// little.
func fingerprint(cs *ClusterSet) string {
	var e encoder
	all := sha256.New()
	cs.digests = make(map[string]map[ServiceKey]Digest, len(cs.Clusters))
	for i := range cs.Clusters {
		c := &cs.Clusters[i]
		e.reset()
		e.str("cluster")
		e.str(c.Name)
		e.str(c.Network)
		e.locality(c.Locality)
		e.flag(c.Stale)
		e.num(uint64(len(c.Gateways)))
		for _, g := range c.Gateways {
			e.str(g.Address)
			e.num(uint64(g.Port))
			e.str(g.ForNetwork)
		}
		keys := make([]ServiceKey, 0, len(c.ImportIPs))
		for k := range c.ImportIPs {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, ServiceKey.Compare)
		e.num(uint64(len(keys)))
		for _, k := range keys {
			e.str(k.Namespace)
			e.str(k.Name)
			e.strs(c.ImportIPs[k])
		}
		header := e.sum()
		all.Write(header[:])
		m := make(map[ServiceKey]Digest, len(c.Services))
		for j := range c.Services {
			s := &c.Services[j]
			e.reset()
			e.b = append(e.b, header[:]...)
			e.service(s)
			d := e.sum()
			m[s.Key()] = d
			all.Write(d[:])
		}
		cs.digests[c.Name] = m
	}
	return hex.EncodeToString(all.Sum(nil)[:16])
}

// encoder writes a canonical encoding: every string prefixed by its length,
// every list by its count, so no two different inputs encode alike.
type encoder struct{ b []byte }

func (e *encoder) reset()       { e.b = e.b[:0] }
func (e *encoder) num(n uint64) { e.b = binary.AppendUvarint(e.b, n) }
func (e *encoder) str(s string) { e.num(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) sum() Digest  { h := sha256.Sum256(e.b); return Digest(h[:16]) }
func (e *encoder) flag(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) strs(ss []string) {
	e.num(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

func (e *encoder) locality(l Locality) {
	e.str(l.Region)
	e.str(l.Zone)
	e.str(l.SubZone)
}

func (e *encoder) service(s *Service) {
	e.str("svc")
	e.str(s.Namespace)
	e.str(s.Name)
	e.str(string(s.Type))
	e.str(s.ClusterIP)
	e.str(s.SessionAffinity)
	e.flag(s.Exported)
	e.num(uint64(s.ExportedAt.Unix()))
	e.num(uint64(s.ExportedAt.Nanosecond()))
	e.num(uint64(len(s.Ports)))
	for _, p := range s.Ports {
		e.str(p.Name)
		e.num(uint64(p.Port))
		e.num(uint64(p.TargetPort))
		e.str(p.Protocol)
		e.str(p.AppProtocol)
	}
	e.num(uint64(len(s.Endpoints)))
	for i := range s.Endpoints {
		ep := &s.Endpoints[i]
		e.str(ep.Address)
		e.str(ep.Hostname)
		e.locality(ep.Locality)
		e.flag(ep.Ready)
		e.flag(ep.Serving)
		e.flag(ep.Terminating)
		e.str(ep.ServiceAccount)
		e.flag(ep.MTLS)
		var buf [8]string
		e.num(uint64(len(ep.Ports)))
		for _, k := range sortedInto(buf[:0], ep.Ports) {
			e.str(k)
			e.num(uint64(ep.Ports[k]))
		}
		e.num(uint64(len(ep.Labels)))
		for _, k := range sortedInto(buf[:0], ep.Labels) {
			e.str(k)
			e.str(ep.Labels[k])
		}
		if ep.Workload != "" {
			// Only a workload's endpoint has one, so that pods' hashes
			// stay as they were; "wl" is never an address, what follows an endpoint.
			e.str("wl")
			e.str(ep.Workload)
		}
	}
	if len(s.Aliases) > 0 || len(s.DroppedAliases) > 0 {
		// Last, and only when there are any: the digests of services
		// without aliases stay what they were.
		e.str("aliases")
		e.strs(s.Aliases)
		e.strs(s.DroppedAliases)
	}
}

// sortedInto appends m's keys to buf, sorted: with a buffer on the caller's
// stack, small maps cost no allocation.
func sortedInto[V any](buf []string, m map[string]V) []string {
	for k := range m {
		buf = append(buf, k)
	}
	slices.Sort(buf)
	return buf
}
