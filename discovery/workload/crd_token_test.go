package workload

import (
	"testing"
)

// TestConvertTokenReviewCluster: a WorkloadGroup object's
// spec.tokenReviewCluster becomes the group's, and a value that is not a
// DNS label leaves the object out with an error naming it and the field.
func TestConvertTokenReviewCluster(t *testing.T) {
	spec := func(trc string) map[string]any {
		return map[string]any{
			"service": "ratings", "serviceAccount": "ratings", "cluster": "vm-west", "tokenReviewCluster": trc,
			"ports": []any{map[string]any{"port": int64(8080)}},
		}
	}
	g, err := convert("WorkloadGroup shop/ratings-vms", workloadGroup("shop", "ratings-vms", spec("east-1")))
	if err != nil {
		t.Fatal(err)
	}
	if g.TokenReviewCluster != "east-1" || g.ServiceAccount != "ratings" {
		t.Errorf("group %+v", g)
	}
	_, err = convert("WorkloadGroup shop/ratings-vms", workloadGroup("shop", "ratings-vms", spec("East_1")))
	want := `WorkloadGroup shop/ratings-vms: spec.tokenReviewCluster: "East_1" is not a DNS label (lower-case letters, digits and '-', at most 63)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}
