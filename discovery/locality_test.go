package discovery

import "testing"

func TestClampLocality(t *testing.T) {
	l := func(r, z, s string) Locality { return Locality{Region: r, Zone: z, SubZone: s} }
	cs, err := New([]Cluster{
		{Name: "east", Network: "n1", Locality: l("us-east", "", ""), Services: []Service{{
			Namespace: "demo", Name: "echo", Ports: []Port{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}},
			Endpoints: []Endpoint{{Address: "10.0.0.1", Locality: l("us-east", "a", "rack1"), Ready: true}},
		}}},
		{Name: "west", Network: "n2", Locality: l("us-west", "b", "")},
		{Name: "bare", Network: "n3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cluster string
		in      Locality
		want    Locality
	}{
		{"east", l("us-east", "a", "rack1"), l("us-east", "a", "rack1")}, // an endpoint's
		{"east", l("us-east", "a", "rack9"), l("us-east", "a", "")},      // unknown sub-zone
		{"east", l("us-east", "z", ""), l("us-east", "", "")},            // unknown zone
		{"east", l("us-east", "z", "made-up-1"), l("us-east", "", "")},
		{"east", l("mars", "a", "rack1"), l("us-east", "", "")}, // unknown region: the cluster's own
		{"east", l("us-west", "b", ""), l("us-east", "", "")},   // known in another cluster only
		{"west", l("us-west", "b", ""), l("us-west", "b", "")},  // the cluster's own
		{"west", l("us-west", "", ""), l("us-west", "", "")},
		{"bare", l("anywhere", "", ""), Locality{}},  // a cluster with no locality: none
		{"nope", l("x", "y", "z"), l("x", "y", "z")}, // unknown cluster: Resolve refuses it before
	} {
		if got := cs.ClampLocality(c.cluster, c.in); got != c.want {
			t.Errorf("ClampLocality(%s, %s) = %s, want %s", c.cluster, c.in, got, c.want)
		}
	}
	// 10,000 made-up sub-zones clamp to one locality: views stay bounded.
	seen := map[Locality]bool{}
	for i := range 10000 {
		seen[cs.ClampLocality("east", l("us-east", "a", "z"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676))))] = true
	}
	if len(seen) != 1 {
		t.Errorf("10,000 made-up sub-zones gave %d localities, want 1", len(seen))
	}
}
