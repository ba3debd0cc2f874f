// Package proxy is Horizon's own east-west gateway: the data plane that
// `horizon gateway` runs where Envoy is not available, configured over the
// same xDS as an Envoy gateway. The package itself holds no code; the
// gateway's two halves are its subpackages:
//
//	Horizon ──ADS──► ads.Client ──sni.Table──► sni.Proxy ──TLS, by SNI──► the network's pods
//	                 (control half)            (data half)
//
// That is:
//
//   - ads takes the listeners, clusters and assignments Horizon serves a
//     gateway node and turns them into a routing table: server name →
//     endpoints;
//   - sni reads the server name of each TLS connection's ClientHello and
//     forwards the connection, still encrypted, to one of those endpoints.
//
// Everything else under gateway/ is control plane, inside Horizon: package
// gateway renders the resources every gateway (Envoy or this one) is
// served, and gateway/health withdraws gateways that stop answering.
package proxy
