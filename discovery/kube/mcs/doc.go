// Package mcs is Horizon's Multi-Cluster Services controller (KEP-1645,
// sigs.k8s.io/mcs-api v1beta1). It reads the ClusterSet the Kubernetes source
// publishes and the member clusters' caches, computes what every member
// should hold (Desired, a pure function), and writes the difference: the
// status of every ServiceExport, the ServiceImports and the MCS
// EndpointSlices of every importing member. It never decides
// traffic: the discovery model already merged the exports, and a conflict
// never changes the winning definition.
//
// # ServiceExport conditions
//
// Written on every ServiceExport of every member cluster, through the status
// subresource; lastTransitionTime only moves when a status changes.
//
//   - Valid=True/Valid: the export names a Service Horizon can export.
//     Valid=False/NoService: no Service of that name exists in the cluster.
//     Valid=False/InvalidServiceType: the Service is an ExternalName Service.
//   - Ready=True/Exported: the export is part of the ClusterSet Horizon serves
//     (Horizon pushes it to its data plane; the KEP's "Exported").
//     Ready=False/Pending: the export is valid but not merged into the
//     ClusterSet yet (the source has not published it).
//     Ready=False/Failed: the export is invalid (see Valid).
//   - Conflict=True when the exports of a service disagree in any property,
//     on every export of that service, the oldest (winning) one included, as
//     the KEP recommends. Reasons, comma-joined when there are several, in
//     this order: PortConflict (a port clashes, or the port sets merely
//     differ: name, number, protocol and appProtocol count, target ports do
//     not), TypeConflict, SessionAffinityConflict,
//     SessionAffinityConfigConflict, LabelsConflict and AnnotationsConflict
//     (the exports' spec.exportedLabels / exportedAnnotations),
//     InternalTrafficPolicyConflict (unset counts as Cluster),
//     TrafficDistributionConflict, IPFamilyConflict (the Services' ipFamilies
//     as sets). The message names the winning cluster and the conflicting
//     ones.
//     Conflict=False/NoConflicts otherwise. While an export is Pending its
//     Conflict condition is left as it is.
//
// Conflict resolution: the oldest export (creationTimestamp, then the lowest
// cluster id) defines the type, the session affinity and its config, the
// exported labels and annotations, the internal traffic policy, the traffic
// distribution, the IP families' order and every port it declares; younger
// exports add the ports older ones lack (discovery.New). Every replica
// computes the same from the same objects, before and after a restart.
//
// # ServiceImports
//
// One ServiceImport per exported service in every member cluster where the
// namespace exists, the exporting clusters included: spec.type (ClusterSetIP
// or Headless), spec.ports (the merged ports), spec.sessionAffinity and
// sessionAffinityConfig, spec.internalTrafficPolicy and
// spec.trafficDistribution (the winning Service's, left out when it has
// none), spec.ips and spec.ipFamilies (ClusterSetIP: one ClusterSet IP per
// configured IP family, in the order of the winning Service's ipFamilies,
// families it lacks last; Headless: no IPs, the winning Service's
// ipFamilies), and status.clusters (every exporting cluster).
//
// The import's metadata carries the winning ServiceExport's
// spec.exportedLabels and spec.exportedAnnotations, and nothing of the
// Service's own labels. An export cannot override Horizon's keys (the
// managed-by label, annotations under multicluster.horizon.io/). Horizon
// records the keys it copied in the annotations
// multicluster.horizon.io/exported-labels and
// multicluster.horizon.io/exported-annotations, removes exactly those when
// the export stops exporting them, and leaves other labels and annotations
// alone. Horizon labels the imports it writes with
// app.kubernetes.io/managed-by=horizon and only ever updates or deletes
// those; an import of the same name that someone else manages is left alone
// and reported. An import is deleted on the first round after the last export
// of its service leaves the ClusterSet.
//
// Every change a member reports (kube.SourceOptions.OnChange), whether the
// ClusterSet carries it or not (exported labels, traffic policy, IP
// families), starts a round; Resync (default 10 s) catches anything missed.
//
// # ClusterSet IPs
//
// Allocated from configurable CIDRs, at most one per IP family (default IPv4
// 240.240.0.0/16, the range Istio auto-allocates from). An IP already on a
// managed ServiceImport of the service, in any member, is kept; a new one
// starts at a hash of namespace/name and probes for a free address, so every
// replica picks the same. Every member gets the same IPs for a service.
//
// # Writers
//
// Every replica may run a Controller; only the holder of a client-go
// leader-election Lease (horizon-mcs-controller) writes. Writes compare with
// the member's cache (and with what this controller wrote moments ago, while
// the cache catches up) and are skipped when nothing changed. A failed write is
// logged with cluster/namespace/name, counted in horizon_mcs_writes_total and
// retried on a later round; it never stops the others.
//
// A replica that cannot read or write the Lease (no rights on Leases, the
// Lease's namespace missing, refused credentials) never writes; client-go
// only tells klog. election.go wraps the Lease lock: each failure is counted
// in horizon_mcs_leader_election_failures_total{reason}, logged as a warning
// with its reason (one line per reason every 30s) and reported by
// Controller.ElectionStatus (served at /debug/mcs) until a Lease operation
// succeeds. Readiness is unaffected: the replica still serves xDS.
//
// # EndpointSlices
//
// Every member that imports a service (every member with the namespace, the
// exporting ones included) holds, for every exporting cluster and address
// family, MCS EndpointSlices (slices.go, DesiredSlices, a pure function)
// named <service>-<cluster>-<ipv4|ipv6>-<n> and labelled
// multicluster.kubernetes.io/service-name=<service>,
// multicluster.kubernetes.io/source-cluster=<cluster>,
// endpointslice.kubernetes.io/managed-by=mcs-controller.horizon.io and
// app.kubernetes.io/managed-by=horizon. They list the source's endpoints
// with their address, hostname, zone and ready/serving/terminating
// conditions, and the ports by name. A slice holds at most
// SliceConfig.MaxEndpoints (default 100); an endpoint stays in the slice
// that lists it, new ones fill the first slice with room, so a change of one
// endpoint is one write per importing member. Horizon updates and deletes
// only slices labelled with its controller name, never others (a name taken
// by another's slice is skipped). Every round, the start-up's and every
// resync's included, deletes Horizon's slices whose service is no longer
// exported, whose source left the ClusterSet or whose endpoints are gone.
// The Kubernetes source skips MCS slices: they are not a Service's.
//
// Split horizon: a member's slices list only the endpoints of exporting
// clusters on its own network. The others are reachable only through the
// east-west gateways; how many were left out is on the member's
// ServiceImport as networking.horizon.io/endpoints-left-out (a count) and
// networking.horizon.io/endpoints-left-out-reason (whose, on which
// network), absent when nothing is left out.
//
// Metrics: horizon_mcs_endpointslice_writes_total{cluster,result},
// horizon_mcs_endpoints_left_out{cluster} and
// horizon_mcs_endpointslice_lag_seconds, from a ClusterSet change reaching
// the controller (Notify) to the last member's slice write for it.
//
// Not implemented: ServiceImport conditions (the KEP leaves them optional;
// status lives on the exports).
package mcs
