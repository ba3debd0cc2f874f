package workloadsvc

// Kubernetes ServiceAccount tokens as join credentials. A workload group
// that names a tokenReviewCluster (discovery.WorkloadGroup.
// TokenReviewCluster) admits, besides its join tokens, a ServiceAccount
// token of its own identity, reviewed by that member cluster the way the
// certificate API reviews one (certsvc.Reviewer: a TokenReview that checks
// Horizon's audience):
//
//	Bearer <not hzjoin.v1.>  ──► no Reviewer (no members): token_malformed
//	  request names group G  ──► else bad_request; unknown: unknown_group
//	  G.tokenReviewCluster C ──► unset: sa_token_off
//	  TokenReview on C       ──► outside every lock; Denied: its reason
//	  reviewed ns/sa == G's  ──► else identity_mismatch
//	  Registry.Join(G, authorize: G still has C, ns and sa)
//
// The token's account must be the group's identity: the SVID it gets is
// the one the account's owner gets from the certificate API anyway (bound
// to the group's cluster, as every SVID of the group is). Reviews are rate
// limited (Config.ReviewsPerSecond) before they reach the member's API
// server, so a flood of tokens costs the member nothing beyond the limit.

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/workload"
)

// ReasonSATokenOff: a ServiceAccount token for a group that admits none
// (no tokenReviewCluster).
const ReasonSATokenOff = "sa_token_off"

// Defaults of Config.ReviewsPerSecond and Config.ReviewBurst.
const (
	DefaultReviewsPerSecond = 20
	DefaultReviewBurst      = 50
)

// reviewHints are what a caller is told of a reviewer's refusal: fixed
// text, so that nothing of a member's API server's words reaches a client
// (the error goes to the log). A reviewer's reason outside this set counts
// as review_failed: the metric's reasons stay a bounded set.
var reviewHints = map[string]string{
	certsvc.ReasonUnknownCluster: "the group's tokenReviewCluster is not a Kubernetes member cluster Horizon knows",
	certsvc.ReasonTokenRejected:  "the group's tokenReviewCluster does not accept the token",
	certsvc.ReasonTokenAudience:  "the token is not for Horizon's audience (--token-audience)",
	certsvc.ReasonNotSA:          "the token is not a ServiceAccount's",
	certsvc.ReasonReviewFailed:   "the group's tokenReviewCluster could not review the token; try again later",
}

// reviewed checks a ServiceAccount token against the group the request
// names and returns the group's key and the check Registry.Join makes
// under its lock: the group still admits tokens of the cluster that
// reviewed this one, and its identity is still the token's. The review,
// a network call, happens here, outside the registry's lock.
func (s *Server) reviewed(ctx context.Context, group, token string) (discovery.ServiceKey, func(discovery.WorkloadGroup) error, *refusal) {
	var key discovery.ServiceKey
	if s.cfg.Review == nil {
		return key, nil, refuse(ReasonTokenMalformed, codes.Unauthenticated,
			"not a join token (hzjoin.v1.), and Horizon reviews no Kubernetes ServiceAccount tokens here: it has no Kubernetes member clusters")
	}
	if err := key.UnmarshalText([]byte(group)); err != nil {
		return key, nil, refuse(ReasonBadRequest, codes.InvalidArgument, "a ServiceAccount token joins the group the request names: %v", err)
	}
	g, ok := s.cfg.Registry.Group(key)
	if !ok {
		return key, nil, refuse(workload.ReasonUnknownGroup, codes.NotFound, "no workload group %s", key)
	}
	cluster := g.TokenReviewCluster
	if cluster == "" {
		return key, nil, refuse(ReasonSATokenOff, codes.PermissionDenied,
			"group %s admits no ServiceAccount tokens (it names no tokenReviewCluster): join with a token of 'horizon workload token'", key)
	}
	if !s.reviews.AllowN(s.cfg.Now(), 1) {
		return key, nil, refuse(workload.ReasonRateLimited, codes.ResourceExhausted, "more than %g ServiceAccount token reviews a second", s.cfg.ReviewsPerSecond)
	}
	ns, sa, err := s.cfg.Review(ctx, cluster, token)
	if err != nil {
		return key, nil, reviewRefusal(key, cluster, err)
	}
	if ns != g.Namespace || sa != g.ServiceAccount {
		return key, nil, refuse(ReasonIdentityMismatch, codes.PermissionDenied,
			"the token is ServiceAccount %s/%s of cluster %s, but group %s is ServiceAccount %s/%s", ns, sa, cluster, key, g.Namespace, g.ServiceAccount)
	}
	return key, func(now discovery.WorkloadGroup) error {
		if now.TokenReviewCluster != cluster {
			return refuse(ReasonSATokenOff, codes.PermissionDenied,
				"group %s changed while the token was reviewed: it no longer admits ServiceAccount tokens of cluster %s", key, cluster)
		}
		if now.Namespace != ns || now.ServiceAccount != sa {
			return refuse(ReasonIdentityMismatch, codes.PermissionDenied,
				"group %s changed while the token was reviewed: it is ServiceAccount %s/%s now, the token %s/%s", key, now.Namespace, now.ServiceAccount, ns, sa)
		}
		return nil
	}, nil
}

// reviewRefusal turns a reviewer's error into a refusal: a
// *certsvc.Denied's reason (one of reviewHints), else review_failed.
func reviewRefusal(key discovery.ServiceKey, cluster string, err error) *refusal {
	reason := certsvc.ReasonReviewFailed
	var d *certsvc.Denied
	if errors.As(err, &d) {
		if _, known := reviewHints[d.Reason]; known {
			reason = d.Reason
		}
	}
	code := codes.Unauthenticated
	switch reason {
	case certsvc.ReasonReviewFailed:
		code = codes.Unavailable
	case certsvc.ReasonUnknownCluster:
		code = codes.FailedPrecondition // the group names it, not the caller
	}
	r := refuse(reason, code, "group %s: token review by cluster %s: %w", key, cluster, err)
	r.hint = reviewHints[reason]
	return r
}

// Error makes a refusal an error, for an authorize func to return through
// the registry.
func (r *refusal) Error() string { return fmt.Sprintf("%s: %v", r.reason, r.err) }
