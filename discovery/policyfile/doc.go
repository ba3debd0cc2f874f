// Package policyfile reads Horizon's failover policy: one YAML file of
// mesh-wide defaults and per-service rules for locality failover, locality
// and cluster weights, the failover threshold, outlier detection, connect
// timeout and retries. examples/policy/policy.yaml documents every field;
// distribute.yaml and failover.yaml show the locality features.
//
// # Format
//
//	defaults:                      # optional; built-in defaults below
//	  connectTimeout: 5s           # Go duration, > 0, ≤ 24h (built-in 10s)
//	  overprovisioningFactor: 140  # failover threshold, percent, 100-1000 (140)
//	  notReadyEndpoints: unhealthy # or omit (unhealthy; see NotReady)
//	  locality:                    # Istio's localityLbSetting
//	    enabled: true
//	    failoverPriority: [region, zone]   # (built-in [region, zone])
//	    failover: [{from: us-east, to: [us-west]}]
//	    distribute: [{from: "us-east/*", to: {"us-east/us-east-1a": 80, "us-west/*": 20}}]
//	  outlierDetection: {consecutive5xxErrors: 5, consecutiveGatewayErrors: 0,
//	                     interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 10}
//	  retries: {attempts: 2, perTryTimeout: 1s, retryOn: [connect-failure]}
//	  clusters: {weights: {east-1: 3, west-1: 1}, pin: [east-1]}
//	services:
//	  - match: {service: demo/echo}          # or {host: echo.demo.svc.clusterset.local}
//	    <any field of defaults>
//	routes:                                  # route.go, routeparse.go
//	  - host: echo.demo.svc.clusterset.local
//	    subsets: {v2: {version: v2}}         # name -> endpoint labels
//	    rules:                               # first match wins
//	      - name: testers
//	        match: {path: {prefix: /api}, headers: {x-user: {exact: tester}},
//	                from: {cluster: east-1, locality: us-east/*}}
//	        to: [{subset: v2, weight: 70}, {cluster: west-1, weight: 30}]
//	        timeout: 2s
//	        retries: {attempts: 2}
//	        headers: {add: {x-routed: "1"}, remove: [x-debug]}
//
// # Routes
//
// A host's rules are tried in order; a request no rule takes goes to the
// whole service. Parse rejects a rule after one that takes every request,
// a rule with the same match as an earlier one, destination weights that do
// not add up to 100, unknown subsets, clusters, services and regions, a
// cluster without the service, a cluster share of a cluster.local host,
// subsets with the same labels, invalid RE2 expressions, header names not
// in lower case and rewrites of host, grpc-* and x-envoy-* headers.
// RouteErrors counts the problems in routes: (horizon_policy_route_errors).
//
// # distribute with failover
//
// A locality block may hold both. For a proxy whose locality has a
// distribute entry, the localities the shares match form priority 0 with the
// shares' weights. When the block also says how to fail over (it names
// failoverPriority, or has a failover entry for the proxy's region:
// LocalityLB.RanksUnshared), every other locality follows at the next
// priorities, ranked by failoverPriority and failover; otherwise, as in
// Istio, they get no traffic. Proxies without a distribute entry are ranked
// as usual.
//
// # Merging
//
// A service's effective settings are the built-in defaults, then defaults:,
// then the rule matching its service, then the rule matching the host it is
// reached by (Policy.Lookup). Each field a layer gives replaces the inherited
// one whole; locality, outlierDetection, retries and clusters are single
// fields, so a rule's locality block never mixes with the defaults'.
//
// # Checks
//
// Parse rejects, with file:line:col and the path of the value: malformed
// YAML, unknown fields, wrong types, keys given twice, null settings, a
// second rule for one service or host; durations that are not positive Go
// durations; an overprovisioningFactor outside 100-1000; unknown clusters,
// regions, zones and sub-zones (against the Topology); a failoverPriority
// key that is neither a topology key nor a label name, listed twice, zone
// without region before it or subZone without zone; failover from a region
// twice, to itself, to a region twice or to nothing; failover together with
// a failoverPriority that does not start with region (failover ranks the
// regions after the proxy's own, so region must be the first key);
// distribute from a pattern twice, to overlapping patterns, weights outside
// 1-100 or not adding up to 100 per from; enabled:
// false next to fields it disables (locality, outlierDetection), attempts: 0
// next to other retry fields, outlier detection that ejects nothing; cluster
// weights outside 0-1000, every cluster at weight 0, a pinned cluster at
// weight 0, a weight for an unpinned cluster, a cluster pinned twice, an
// empty pin; and a locality block that sends traffic (failover to,
// distribute to) where the clusters block lets no cluster take it. When only
// a rule's clusters block makes an inherited locality target unreachable,
// that is a warning: the inherited target is moot for that service. Other
// warnings: a rule for a service no cluster holds, a weighted or pinned
// cluster that lacks the service. Every error is collected; they are joined,
// sorted by position.
//
// # Limits
//
// The file is bounded (limits.go), generously: at most MaxFileSize bytes
// (4 MiB), checked before parsing, and MaxRules rules (10,000); per locality
// block MaxFailoverPriority keys (16), MaxFailover failover entries and
// MaxFailoverTo regions in each one's to (256), MaxDistribute distribute
// entries (1000) and MaxDistributeTo shares in each one's to (100, as
// weights of at least 1 add up to 100); per retries block MaxRetryOn
// conditions (32); per clusters block MaxClusters weights and pinned
// clusters (1000). A list past its bound is reported at the list, as
// "N keys, at most 16", and none of it is read. YAML aliases may expand the
// document to ten times its own nodes, and to MaxFileSize/2+10,000 nodes at most
// (yamlnode.Reader.Root).
//
// # Reloading
//
// A Watcher reloads the file on change (fsnotify on its directory and a
// poll), and checks it again when SetTopology brings a different topology.
// It reads no more than MaxFileSize+1 bytes of the file. A rejected edit
// (a file too large included) keeps the last good policy serving; a serving policy that
// no longer passes against a new topology keeps serving too, flagged by
// Status().TopologyMismatch and horizon_policy_topology_mismatch.
package policyfile
