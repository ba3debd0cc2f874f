package file

import (
	"strings"
	"testing"
)

// TestWorkloadGroupTokenReviewCluster: tokenReviewCluster is read into the
// group (file and custom resource alike), a bad value is an error naming
// the object and spec path, and a change of it changes the version (it
// changes who may join).
func TestWorkloadGroupTokenReviewCluster(t *testing.T) {
	const spec = "{name: vms, namespace: shop, service: ratings, serviceAccount: ratings, cluster: vm-net, ports: [{port: 80}], tokenReviewCluster: %s}"
	g, err := ParseWorkloadGroup("WorkloadGroup shop/vms", []byte(strings.Replace(spec, "%s", "east", 1)))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "tokenReviewCluster", g.TokenReviewCluster, "east")
	g, err = ParseWorkloadGroup("WorkloadGroup shop/vms", []byte(strings.Replace(spec, ", tokenReviewCluster: %s", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "tokenReviewCluster unset", g.TokenReviewCluster, "")

	_, err = ParseWorkloadGroup("WorkloadGroup shop/vms", []byte(strings.Replace(spec, "%s", "East.1", 1)))
	want := `WorkloadGroup shop/vms: spec.tokenReviewCluster: "East.1" is not a DNS label (lower-case letters, digits and '-', at most 63)`
	if err == nil || err.Error() != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}

	data := string(mustRead(t, "testdata/valid/workloads.yaml"))
	a, err := Parse("a", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b", []byte(strings.Replace(data, "    gracePeriod: 20s\n", "    gracePeriod: 20s\n    tokenReviewCluster: east-1\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := b.WorkloadGroup(a.WorkloadGroups[1].Key()); !ok || g.TokenReviewCluster != "east-1" {
		t.Fatalf("group %+v: tokenReviewCluster not read from the file", g)
	}
	if a.Version() == b.Version() {
		t.Errorf("tokenReviewCluster set, the version did not change: %s", a.Version())
	}
}
