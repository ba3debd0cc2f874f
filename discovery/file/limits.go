package file

import "github.com/horizonmesh/horizon/internal/yamlnode"

// Limits of the ClusterSet file. Parse rejects a file beyond any of them,
// the size before parsing anything ("file:1:1: size > 8388608 bytes: ..."),
// a list or mapping at its position ("file:line:col: clusters[east-1].services:
// 20001 services, at most 20000"); Load and the Watcher read no more than
// MaxFileSize+1 bytes of a file.
//
// The lists' bounds are generous; the size bound is what bounds the work.
// A large mesh, 100 clusters of 100 services of 10 endpoints (10,000
// services, 100,000 endpoints), written an endpoint a line as
// examples/local/clusterset.yaml writes them, is 4.6 MiB; it parses in
// about a second with a peak of about 200 MB (measured on 2 cores). The
// same mesh with each endpoint's zone, service account and labels on lines
// of their own is 14.5 MiB, past the bound: at that scale, write endpoints
// a line each, or use the Kubernetes source. The bound is not higher
// because yaml.v3's node tree costs up to about 100 bytes of memory per
// byte of input (8 MiB of one-character list items: about 850 MB).
const (
	// MaxFileSize is the most bytes a ClusterSet file holds: 8 MiB.
	MaxFileSize = 8 << 20
	// MaxClusters is the most clusters of a file, ten times the large mesh.
	MaxClusters = 1000
	// MaxNetworks is the most networks: each cluster is on one.
	MaxNetworks = MaxClusters
	// MaxGateways is the most gateway addresses of a cluster: a few per
	// network it is reached from (IPv4, IPv6, a name) is plenty.
	MaxGateways = 256
	// MaxServices is the most services of a cluster: twice Kubernetes'
	// tested threshold of 10,000 Services per cluster.
	MaxServices = 20_000
	// MaxPorts is the most ports of a service, and of an endpoint's ports:
	// an EndpointSlice, where the Kubernetes source reads them, holds 100.
	MaxPorts = 100
	// MaxEndpoints is the most endpoints of a service in a cluster: the
	// whole large mesh's endpoints in one service would fit.
	MaxEndpoints = 100_000
	// MaxLabels is the most labels of an endpoint; a pod rarely has 20.
	MaxLabels = 64
)

// The bounds of the format's lists and mappings, as yamlnode checks them.
var (
	networksBound      = yamlnode.Bound{Max: MaxNetworks, What: "networks"}
	clustersBound      = yamlnode.Bound{Max: MaxClusters, What: "clusters"}
	gatewaysBound      = yamlnode.Bound{Max: MaxGateways, What: "gateways"}
	servicesBound      = yamlnode.Bound{Max: MaxServices, What: "services"}
	portsBound         = yamlnode.Bound{Max: MaxPorts, What: "ports"}
	endpointsBound     = yamlnode.Bound{Max: MaxEndpoints, What: "endpoints"}
	endpointPortsBound = yamlnode.Bound{Max: MaxPorts, What: "ports"}
	labelsBound        = yamlnode.Bound{Max: MaxLabels, What: "labels"}
)
