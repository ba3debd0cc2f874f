// Package load is Horizon's load harness: simulated Envoy sidecars on real
// gRPC ADS streams (state of the world or delta), a fleet of them meant to
// run in a process of its own, and scenarios that feed an in-process
// Horizon through server.Server.Update with bench/gen ClusterSets and measure
// convergence, CPU, bytes and memory. bench/cmd/horizon-load is its command;
// bench/README.md describes the method.
//
// Convergence is measured in band with marker endpoints: change i replaces
// one endpoint's address with MarkerAddress(i), an address in 100.64.0.0/10
// that nothing else uses. Every proxy decodes each assignment it receives
// and, after sending the ACK, records the wall-clock time it first ACKed an
// assignment holding a marker. Change i has converged when every proxy on
// the changed cluster's network (the proxies whose view holds that
// endpoint) has ACKed its marker; its convergence time is the last such ACK
// minus the time the server handed the ClusterSet to Update. Replacing an
// address keeps the endpoint count, so proxies on other networks (which see
// only the gateway, weighted by that count) must receive nothing.
package load
