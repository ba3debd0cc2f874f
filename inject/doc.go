// Package inject adds Horizon's sidecar to Kubernetes pods: the mutating
// admission webhook `horizon serve --injector-address` serves, and
// `horizon inject` for manifests, both call Pod.
//
//	namespace label horizon-injection=enabled ┐   apiserver ─► Webhook (/inject/<cluster>)
//	pod label sidecar.horizon.io/inject=true  ┘                  │ Target: cluster's network (ClusterSet),
//	                                                             │ node's region/zone, trust bundle
//	                                      Pod(Config, Target, pod) (pure) ─► injected pod, JSONPatch
//
// What a pod gets (names are part of the contract with the Helm chart):
//
//   - volumes horizon-token (projected ServiceAccount token for Horizon's
//     audience), horizon-certs and horizon-bootstrap (emptyDir);
//   - init container horizon-bootstrap: `horizon bootstrap` writes the
//     proxy's bootstrap, and the trust bundle from HORIZON_CA_BUNDLE into
//     horizon-certs so the agent can verify Horizon on first contact;
//   - sidecar mode: init container horizon-capture (`horizon capture`,
//     nftables, NET_ADMIN and NET_RAW only);
//   - native sidecar horizon-agent (`horizon agent`), whose startup probe
//     holds the next containers until the first SVID is written;
//   - sidecar mode: native sidecar horizon-proxy (Envoy, as the proxy uid);
//   - proxyless mode: GRPC_XDS_BOOTSTRAP in each app container and the
//     bootstrap and certificate volumes mounted read-only.
//
// A pod carrying the status annotation sidecar.horizon.io/status was
// injected already and is left alone.
package inject
