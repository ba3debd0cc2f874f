package xds

import (
	"slices"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/discovery/policyfile"
)

// commonLB is the common_lb_config of every EDS cluster Horizon renders.
//
// Locality weighted load balancing: Envoy uses
// LocalityLbEndpoints.load_balancing_weight only when the cluster enables it;
// without it Envoy spreads a priority's traffic by host weight alone, so a
// distribute rule's 75/25 split would come out 50/50 with one host on each
// side. With it Envoy picks a locality by weight × availability
// (availability = min(100, overprovisioning factor × available hosts /
// hosts)), then a host within it:
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/locality_weight
// It is set on every EDS cluster, not only on those whose assignment has
// several localities in a priority today, so that an endpoint change never
// changes a cluster (CDS) as well. gRPC always weighs localities (it has no
// such field and ignores this one).
//
// Panic mode off (healthy_panic_threshold 0): not-ready endpoints stay in
// assignments as UNHEALTHY (policyfile.NotReadyUnhealthy), and with Envoy's
// default 50 % threshold a priority with fewer than half of its endpoints
// ready would, once no other priority can take its load, send traffic to
// every endpoint "regardless of their health", not-ready pods included:
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/panic_threshold
// With it off, load goes only to ready endpoints, as when not-ready ones are
// left out, and a service with none ready fails fast.
func commonLB() *cluster.Cluster_CommonLbConfig {
	return &cluster.Cluster_CommonLbConfig{
		HealthyPanicThreshold: &typev3.Percent{Value: 0},
		LocalityConfigSpecifier: &cluster.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &cluster.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
		},
	}
}

// outlierDetection maps a policy's outlier detection onto Envoy's (nil: off).
// Only the consecutive-error checks the policy names eject: Envoy's
// success-rate check, on by default, is turned off, and a consecutive check
// at 0 is not enforced. Connection failures count as 5xx (Envoy's default).
func outlierDetection(od *policyfile.OutlierDetection) *cluster.OutlierDetection {
	if od == nil {
		return nil
	}
	enforce := func(n uint32) *wrapperspb.UInt32Value {
		if n == 0 {
			return wrapperspb.UInt32(0)
		}
		return wrapperspb.UInt32(100)
	}
	out := &cluster.OutlierDetection{
		Interval:                           durationpb.New(od.Interval),
		BaseEjectionTime:                   durationpb.New(od.BaseEjectionTime),
		MaxEjectionPercent:                 wrapperspb.UInt32(od.MaxEjectionPercent),
		EnforcingConsecutive_5Xx:           enforce(od.Consecutive5xxErrors),
		EnforcingConsecutiveGatewayFailure: enforce(od.ConsecutiveGatewayErrors),
		EnforcingSuccessRate:               wrapperspb.UInt32(0),
	}
	if od.Consecutive5xxErrors > 0 {
		out.Consecutive_5Xx = wrapperspb.UInt32(od.Consecutive5xxErrors)
	}
	if od.ConsecutiveGatewayErrors > 0 {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(od.ConsecutiveGatewayErrors)
	}
	return out
}

// sidecarRetries maps a policy's retries onto an Envoy route's retry policy
// (nil: not retried). Envoy takes HTTP and gRPC conditions in one retry_on.
func sidecarRetries(r *policyfile.Retries) *route.RetryPolicy {
	if r == nil || r.Attempts == 0 {
		return nil
	}
	rp := &route.RetryPolicy{RetryOn: strings.Join(r.RetryOn, ","), NumRetries: wrapperspb.UInt32(r.Attempts)}
	if r.PerTryTimeout > 0 {
		rp.PerTryTimeout = durationpb.New(r.PerTryTimeout)
	}
	return rp
}

// grpcRetryOn are the retry conditions grpc-go acts on (gRPC status codes);
// it ignores every other one.
var grpcRetryOn = []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}

// proxylessRetries maps a policy's retries onto the subset grpc-go applies:
// the gRPC status conditions and the number of retries. grpc-go has no
// per-try timeout; retries without a gRPC condition are not sent (noted).
func (t *translator) proxylessRetries(h *hostPort, r *policyfile.Retries) *route.RetryPolicy {
	if r == nil || r.Attempts == 0 {
		return nil
	}
	var on []string
	for _, c := range r.RetryOn {
		if slices.Contains(grpcRetryOn, c) {
			on = append(on, c)
		}
	}
	if len(on) < len(r.RetryOn) || r.PerTryTimeout > 0 {
		t.notef("%s: proxyless gRPC retries on gRPC status conditions only (%s) and has no per-try timeout", h.host, strings.Join(grpcRetryOn, ", "))
	}
	if len(on) == 0 {
		return nil
	}
	return &route.RetryPolicy{RetryOn: strings.Join(on, ","), NumRetries: wrapperspb.UInt32(r.Attempts)}
}
