// Package chaos is Horizon's fault suite: test support that runs real member
// clusters (kube-apiservers from discovery/kube/kubetest), the `horizon
// serve` binary built from this tree, and a fleet of simulated sidecars
// (bench/load's proxies) whose every accepted response is recorded, then
// injects faults and checks every proxy's view against an oracle while the
// faults run.
//
//	members (kubetest)  ──list──▶  Oracle (oracle.go): the view each network
//	    │ informers                 must hold, computed from API objects alone
//	    ▼                                   │
//	horizon serve ──ADS──▶ Recorders ◀──────┘ Checker (checker.go): samples
//	 (horizon.go)          (recorder.go)      every recorder continuously
//
// The oracle is written from the README's split-horizon rules without
// calling discovery/ or xds/: for a proxy on network N and an exported
// service, every ready endpoint of an exporting member on N appears as pod
// address and port with weight 1, and every other exporting member is
// replaced by its network's gateway address, weighted by its ready
// endpoints. Endpoints without mutual TLS never cross a network.
//
// Invariants (RELIABILITY.md names the scenario that checks each):
//
//	I1 an endpoint disappears from a view only after the harness removed
//	   something from its member (Ledger); an apiserver outage is no removal
//	I3 every view equals the oracle within Bound of the last change
//	I4 a NACKed version is not sent again on the same stream
//	I5 goroutines, open fds and connected proxies return to baseline
//	I6 no EDS or RDS response names a resource the proxy did not ask for
//
// Long mode (CHAOS_LONG=1, `make chaos`) holds outages for minutes with
// 1,000 proxies; the default sizes keep each scenario to seconds.
package chaos
