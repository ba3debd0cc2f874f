package load

import (
	"testing"

	"github.com/horizonmesh/horizon/discovery/file"
)

// TestEncodeClusterSet: every ClusterSet of the file scenarios, written in
// the file format, parses back to the same version.
func TestEncodeClusterSet(t *testing.T) {
	for _, sc := range []Scenario{
		{Name: HotService, Endpoints: 10, Changes: 3},
		{Name: Churn, Endpoints: 20, Services: 5, Networks: 2, Changes: 3},
		{Name: Gateway, Endpoints: 8, Changes: 3},
		{Name: NewService, Endpoints: 8, Changes: 2},
	} {
		base, changes, err := sc.Build()
		if err != nil {
			t.Fatal(err)
		}
		sets := []*Change{{Set: base}}
		for i := range changes {
			sets = append(sets, &changes[i])
		}
		for i, ch := range sets {
			b, err := EncodeClusterSet(ch.Set)
			if err != nil {
				t.Fatal(err)
			}
			got, err := file.Parse("encoded.yaml", b)
			if err != nil {
				t.Fatalf("%s set %d: %v\n%s", sc.Name, i, err, b)
			}
			if got.Version() != ch.Set.Version() {
				t.Fatalf("%s set %d: parsed back as version %s, want %s", sc.Name, i, got.Version(), ch.Set.Version())
			}
		}
	}
}
