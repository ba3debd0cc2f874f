package xds

import (
	"slices"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/xds/policyfile"
)

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
