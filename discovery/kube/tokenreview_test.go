package kube

import (
	"errors"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
)

// TestReviewToken on real API servers: a ServiceAccount token proves its own
// namespace and account in the member that issued it, and nothing else.
func TestReviewToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two kube-apiservers")
	}
	cl := kubetest.Start(t, "east", "west")
	east, west := cl[0], cl[1]
	ctx := t.Context()
	for _, c := range cl {
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Kube.CoreV1().ServiceAccounts("demo").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "echo"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	token := func(c *kubetest.Cluster, audience string) string {
		tr, err := c.Kube.CoreV1().ServiceAccounts("demo").CreateToken(ctx, "echo", &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	eastToken := token(east, "horizon")

	id, err := ReviewToken(ctx, east.Kube, eastToken, "horizon")
	if err != nil || id.Namespace != "demo" || id.ServiceAccount != "echo" {
		t.Fatalf("east's own token in east: %+v, %v", id, err)
	}
	tests := []struct {
		name   string
		member *kubetest.Cluster
		token  string
		want   error
	}{
		{"a token from east cannot claim west", west, eastToken, ErrTokenRejected},
		// The API server refuses a token for another audience itself;
		// ReviewToken checks the audiences it returns as well.
		{"a token for another audience", east, token(east, "someone-else"), ErrTokenRejected},
		{"garbage", east, "not-a-token", ErrTokenRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ReviewToken(ctx, tt.member.Kube, tt.token, "horizon")
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %+v, %v; want %v", id, err, tt.want)
			}
		})
	}
}
