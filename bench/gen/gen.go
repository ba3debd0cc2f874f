// Package gen builds synthetic ClusterSets for benchmarks and load tests.
//
// Generate is deterministic: the same Spec always gives a ClusterSet with the
// same Version. Every address it hands out is data only (nothing dials it):
// endpoints get unique addresses in 10.0.0.0/9, service virtual IPs come from
// 10.128.0.0/9 and gateways from 172.16.0.0/12.
package gen

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/horizonmesh/horizon/discovery"
)

// Spec describes the shape of a synthetic ClusterSet.
type Spec struct {
	// Networks is the number of networks, named net-0, net-1, ...; network i
	// is in region region-i.
	Networks int
	// ClustersPerNetwork is the number of member clusters on each network,
	// named n<network>-c<index>.
	ClustersPerNetwork int
	// Services is the number of services. Every cluster defines and exports
	// every service (namespace sameness), even where it holds none of its
	// endpoints.
	Services int
	// EndpointsPerService is the number of endpoints of each service across
	// the whole ClusterSet. All endpoints of all services are dealt
	// round-robin over the clusters, one deal continuing where the previous
	// service's stopped, so that each service's endpoints and the whole
	// ClusterSet's are spread evenly (even with fewer endpoints per service
	// than clusters); within a cluster they alternate between its two zones.
	EndpointsPerService int
	// GatewaysPerCluster is the number of east-west gateway addresses of each
	// cluster. 0 leaves the clusters without gateways: then no endpoint is
	// reachable from another network.
	GatewaysPerCluster int
	// PortsPerService is the number of ports of each service; 0 means 1. The
	// first is HTTP (80 -> 8080), the second gRPC (9090), the rest plain TCP
	// (10000, 10001, ...).
	PortsPerService int
	// Namespaces is the number of namespaces the services are dealt over,
	// round-robin; 0 means 1.
	Namespaces int
}

// Counts of what a Spec generates.
type Counts struct {
	Clusters  int
	Gateways  int // gateway addresses, over all clusters
	Services  int // per-cluster service definitions (Services × Clusters)
	Endpoints int // endpoints, over all services and clusters
}

// Counts returns what Generate(s) produces.
func (s Spec) Counts() Counts {
	s = s.withDefaults()
	clusters := s.Networks * s.ClustersPerNetwork
	return Counts{
		Clusters:  clusters,
		Gateways:  clusters * s.GatewaysPerCluster,
		Services:  clusters * s.Services,
		Endpoints: s.Services * s.EndpointsPerService,
	}
}

func (s Spec) withDefaults() Spec {
	if s.PortsPerService == 0 {
		s.PortsPerService = 1
	}
	if s.Namespaces == 0 {
		s.Namespaces = 1
	}
	return s
}

// Limits of the address ranges Generate hands out.
const (
	maxEndpoints = 1 << 23 // 10.0.0.0/9
	maxServices  = 1 << 23 // 10.128.0.0/9
	maxGateways  = 1 << 20 // 172.16.0.0/12
	maxPorts     = 1000
)

// Validate reports whether the spec can be generated.
func (s Spec) Validate() error {
	s = s.withDefaults()
	var errs []error
	if s.Networks < 1 {
		errs = append(errs, fmt.Errorf("networks = %d, want >= 1", s.Networks))
	}
	if s.ClustersPerNetwork < 1 {
		errs = append(errs, fmt.Errorf("clusters per network = %d, want >= 1", s.ClustersPerNetwork))
	}
	if s.Services < 0 || s.EndpointsPerService < 0 || s.GatewaysPerCluster < 0 || s.PortsPerService < 0 || s.Namespaces < 0 {
		errs = append(errs, errors.New("counts must not be negative"))
	}
	if s.PortsPerService > maxPorts {
		errs = append(errs, fmt.Errorf("ports per service = %d, want <= %d", s.PortsPerService, maxPorts))
	}
	if errs != nil {
		return errors.Join(errs...)
	}
	// Divide rather than multiply, so that huge specs cannot overflow.
	if s.Services > 0 && s.EndpointsPerService > maxEndpoints/s.Services {
		errs = append(errs, fmt.Errorf("%d services × %d endpoints: at most %d endpoints fit in 10.0.0.0/9", s.Services, s.EndpointsPerService, maxEndpoints))
	}
	if s.Services > maxServices {
		errs = append(errs, fmt.Errorf("%d services: at most %d fit in 10.128.0.0/9", s.Services, maxServices))
	}
	if clusters := s.Networks * s.ClustersPerNetwork; s.Networks > maxGateways || s.ClustersPerNetwork > maxGateways ||
		s.GatewaysPerCluster > maxGateways/clusters {
		errs = append(errs, fmt.Errorf("%d clusters × %d gateways: at most %d gateways fit in 172.16.0.0/12", clusters, s.GatewaysPerCluster, maxGateways))
	}
	return errors.Join(errs...)
}

// Epoch is the ExportedAt of the first cluster's exports; cluster i exports
// i seconds later, so that the oldest export (cluster n0-c0) wins conflicts.
var Epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// GatewayPort is the port of every generated gateway address.
const GatewayPort = 15443

// NetworkName returns the name of network i.
func NetworkName(i int) string { return "net-" + strconv.Itoa(i) }

// ClusterName returns the name of cluster c of network n.
func ClusterName(n, c int) string { return "n" + strconv.Itoa(n) + "-c" + strconv.Itoa(c) }

// ServiceName returns the name of service i.
func ServiceName(i int) string { return "svc-" + strconv.Itoa(i) }

// NamespaceName returns the name of namespace i.
func NamespaceName(i int) string { return "ns-" + strconv.Itoa(i) }

// Locality returns the locality of zone z (0 or 1) of network n. A cluster's
// own locality is its zone 0.
func Locality(n, z int) discovery.Locality {
	region := "region-" + strconv.Itoa(n)
	return discovery.Locality{Region: region, Zone: region + string(rune('a'+z))}
}

// Generate builds the ClusterSet a Spec describes.
func Generate(s Spec) (*discovery.ClusterSet, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}
	s = s.withDefaults()
	nClusters := s.Networks * s.ClustersPerNetwork
	clusters := make([]discovery.Cluster, nClusters)
	gateway := 0
	for n := range s.Networks {
		for c := range s.ClustersPerNetwork {
			i := n*s.ClustersPerNetwork + c
			cl := &clusters[i]
			cl.Name = ClusterName(n, c)
			cl.Network = NetworkName(n)
			cl.Locality = Locality(n, 0)
			cl.Gateways = make([]discovery.Gateway, s.GatewaysPerCluster)
			for g := range cl.Gateways {
				cl.Gateways[g] = discovery.Gateway{Address: addr(172, 16, gateway), Port: GatewayPort}
				gateway++
			}
			cl.Services = make([]discovery.Service, s.Services)
		}
	}
	ports := servicePorts(s.PortsPerService)
	ep := 0
	for svc := range s.Services {
		name, ns := ServiceName(svc), NamespaceName(svc%s.Namespaces)
		labels := map[string]string{"app": name}
		// Deal the endpoints out first, so that each cluster's slice is
		// allocated once.
		perCluster := make([]int, nClusters)
		for j := range s.EndpointsPerService {
			perCluster[(ep+j)%nClusters]++
		}
		for i := range clusters {
			cl := &clusters[i]
			cl.Services[svc] = discovery.Service{
				Namespace:  ns,
				Name:       name,
				Type:       discovery.ClusterSetIP,
				ClusterIP:  addr(10, 128, svc),
				Exported:   true,
				ExportedAt: Epoch.Add(time.Duration(i) * time.Second),
				Ports:      slices.Clone(ports),
				Endpoints:  make([]discovery.Endpoint, 0, perCluster[i]),
			}
		}
		for range s.EndpointsPerService {
			i := ep % nClusters
			cl := &clusters[i]
			n := i / s.ClustersPerNetwork
			// The k-th endpoint this cluster gets alternates between zones.
			k := len(cl.Services[svc].Endpoints)
			cl.Services[svc].Endpoints = append(cl.Services[svc].Endpoints, discovery.Endpoint{
				Address:        addr(10, 0, ep),
				Locality:       Locality(n, k%2),
				Ready:          true,
				ServiceAccount: name,
				MTLS:           true,
				Labels:         labels, // shared read-only
			})
			ep++
		}
	}
	return discovery.New(clusters)
}

// servicePorts returns the ports of every service, sorted by number.
func servicePorts(n int) []discovery.Port {
	ports := make([]discovery.Port, 0, n)
	for i := range n {
		switch i {
		case 0:
			ports = append(ports, discovery.Port{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP", AppProtocol: "http"})
		case 1:
			ports = append(ports, discovery.Port{Name: "grpc", Port: 9090, TargetPort: 9090, Protocol: "TCP", AppProtocol: "grpc"})
		default:
			p := uint32(10000 + i - 2)
			ports = append(ports, discovery.Port{Name: "tcp-" + strconv.Itoa(int(p)), Port: p, TargetPort: p, Protocol: "TCP"})
		}
	}
	return ports
}

// addr returns the i-th address after a.b.0.0.
func addr(a, b byte, i int) string {
	ip := [4]byte{a, b + byte(i>>16), byte(i >> 8), byte(i)}
	return netip.AddrFrom4(ip).String()
}
