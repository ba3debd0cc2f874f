package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TokenIdentity is what a member cluster says a ServiceAccount token is.
type TokenIdentity struct {
	Namespace      string
	ServiceAccount string
	// Pod is the Pod a projected token is bound to, when it is.
	Pod string
}

// Token review refusals, by reason (a bounded set, for metrics).
var (
	ErrTokenRejected       = errors.New("token rejected")                  // the member does not authenticate it
	ErrTokenAudience       = errors.New("token audience")                  // not issued for Horizon
	ErrNotServiceAccount   = errors.New("token is not a ServiceAccount's") // a user's, or a node's
	ErrTokenReviewFailed   = errors.New("token review failed")             // the member could not be asked
	serviceAccountUserName = "system:serviceaccount:"
)

// ReviewToken asks the member cluster that issued a token who it belongs to.
// The token must authenticate in that member, carry the audience, and be a
// ServiceAccount's. A token from one member never passes another member's
// review, so a caller cannot claim a cluster it does not belong to.
func ReviewToken(ctx context.Context, member kubernetes.Interface, token, audience string) (TokenIdentity, error) {
	review := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}
	if audience != "" {
		review.Spec.Audiences = []string{audience}
	}
	got, err := member.AuthenticationV1().TokenReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return TokenIdentity{}, fmt.Errorf("%w: %v", ErrTokenReviewFailed, err)
	}
	st := got.Status
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "not authenticated"
		}
		return TokenIdentity{}, fmt.Errorf("%w: %s", ErrTokenRejected, msg)
	}
	if audience != "" && !slices.Contains(st.Audiences, audience) {
		return TokenIdentity{}, fmt.Errorf("%w: issued for %v, not %q", ErrTokenAudience, st.Audiences, audience)
	}
	rest, ok := strings.CutPrefix(st.User.Username, serviceAccountUserName)
	ns, sa, found := strings.Cut(rest, ":")
	if !ok || !found || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return TokenIdentity{}, fmt.Errorf("%w: %q", ErrNotServiceAccount, st.User.Username)
	}
	id := TokenIdentity{Namespace: ns, ServiceAccount: sa}
	if pods := st.User.Extra["authentication.kubernetes.io/pod-name"]; len(pods) == 1 {
		id.Pod = pods[0]
	}
	return id, nil
}
