package policyfile

import "github.com/horizonmesh/horizon/internal/yamlnode"

// Limits of the policy file. Parse rejects a file beyond any of them, the
// size before parsing anything ("file:1:1: size > 4194304 bytes: ..."), a
// list or mapping at its position ("file:line:col:
// services[demo/echo].locality.failoverPriority: 20000 keys, at most 16");
// Load and the Watcher read no more than MaxFileSize+1 bytes of a file.
//
// They are generous: a rule for every service of a 10,000-service mesh,
// each with a connect timeout, a locality block with failoverPriority and
// failover, and cluster weights, is 2.2 MiB and checks in under a second
// (measured on 2 cores). They turn a mistake into a clear error, and keep
// the checks that compare entries pairwise (distribute patterns) small.
const (
	// MaxFileSize is the most bytes a policy file holds, 4 MiB: the rule
	// for every service above fits, with room for comments. yaml.v3's node
	// tree costs up to about 100 bytes of memory per byte of input, about
	// 430 MB at the bound.
	MaxFileSize = 4 << 20
	// MaxRules is the most rules (services:), by service or by host: one
	// for every service of a 10,000-service mesh. A rule is an exception
	// to defaults:, so a real file has far fewer.
	MaxRules = 10_000
	// MaxFailoverPriority is the most keys of a failoverPriority. Each key
	// adds a priority level (n keys rank endpoints 0..n), and Envoy sends a
	// level traffic only while the levels above it are less than
	// 100/overprovisioningFactor percent healthy, so levels far down are
	// never used; ranking compares the keys for every proxy and endpoint.
	// The five topology keys and a handful of labels fit within 16.
	MaxFailoverPriority = 16
	// MaxFailover is the most failover entries of a locality block, and
	// MaxFailoverTo the most regions of one entry's to: a region has one
	// entry, each region in to adds a priority level, and no cloud has as
	// many as 256 regions.
	MaxFailover   = 256
	MaxFailoverTo = 256
	// MaxDistribute is the most distribute entries of a locality block,
	// one per from pattern (a region, zone or sub-zone). Entries are
	// compared pairwise.
	MaxDistribute = 1000
	// MaxDistributeTo is the most shares of a distribute entry: weights of
	// at least 1 add up to 100, so a valid entry never has more. Shares are
	// compared pairwise.
	MaxDistributeTo = distributeTotal
	// MaxRetryOn is the most retry conditions of a retries block: each of
	// the 16 Envoy knows at most once, with room for new ones.
	MaxRetryOn = 32
	// MaxClusters is the most cluster weights, and pinned clusters, of a
	// clusters block: discovery/file's MaxClusters.
	MaxClusters = 1000
)

// The bounds of the format's lists and mappings, as yamlnode checks them.
var (
	rulesBound            = yamlnode.Bound{Max: MaxRules, What: "rules"}
	failoverPriorityBound = yamlnode.Bound{Max: MaxFailoverPriority, What: "keys"}
	failoverBound         = yamlnode.Bound{Max: MaxFailover, What: "failover entries"}
	failoverToBound       = yamlnode.Bound{Max: MaxFailoverTo, What: "regions"}
	distributeBound       = yamlnode.Bound{Max: MaxDistribute, What: "distribute entries"}
	distributeToBound     = yamlnode.Bound{Max: MaxDistributeTo, What: "shares"}
	retryOnBound          = yamlnode.Bound{Max: MaxRetryOn, What: "retry conditions"}
	weightsBound          = yamlnode.Bound{Max: MaxClusters, What: "clusters"}
	pinBound              = yamlnode.Bound{Max: MaxClusters, What: "clusters"}
)
