// Package e2e holds Horizon's end-to-end test on real Kubernetes nodes
// (mesh_test.go): the whole mesh deployed from Horizon's image and chart into
// two member clusters, each a real kube-apiserver, kube-controller-manager
// (EndpointSlice and ServiceAccount controllers only), kubelet and containerd
// with a CNI bridge of its own, on two networks the host keeps apart:
//
//	               host (root): both kube-apiservers on 0.0.0.0, iptables isolation
//	┌──────────── west (net-west, us-west/us-west-1a) ────────────┐   ┌────────── east (net-east, us-east/us-east-1a) ──────────┐
//	│ bridge 10.210.1.1/24 (hostPorts 15012, 15017 → horizon)       │   │ bridge 10.210.2.1/24                                     │
//	│                                                               │   │                                                          │
//	│  horizon (serve: xDS+certificate API 15012, injector 15017)   │◄──┼── agents, xDS of east's pods and gateway (via 10.210.1.1)│
//	│    watches west and east through member Secrets               │   │                                                          │
//	│  horizon-eastwest (horizon gateway, :15443) ◄─────────────────┼───┼── only allowed cross-network path ──► horizon-eastwest  │
//	│  echo (proxyless grpc-go server, injected)                    │   │  echo (proxyless grpc-go server, injected)              │
//	│  client (proxyless grpc-go client, injected by the webhook)   │   │                                                          │
//	│  witness (capture init container + stand-in for Envoy)        │   │                                                          │
//	└───────────────────────────────────────────────────────────────┘   └──────────────────────────────────────────────────────────┘
//
// Pod IPs of one network are not routed to the other: the host forwards
// between the two bridges only new connections to the other network's
// gateway and to Horizon's host ports (internal/nodetest.Isolate). No Envoy
// binary exists on the machines this runs on: the capture witness stands in
// for Envoy on 15001/15006 and records original destinations.
//
// There is no scheduler, kube-proxy or cluster DNS: pods name their node
// (Deployments of the chart become Pods with nodeName), clients reach
// Horizon and the kube-apiservers on host addresses, and a load balancer is
// stood in for by writing the gateway Service's status.
package e2e
