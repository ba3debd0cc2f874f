package xds

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
)

// viewBytes marshals a view's resources deterministically, type by type in
// push order: two groups render the same view exactly when these are equal.
func viewBytes(t *testing.T, r *Resources) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, typeURL := range TypeURLs {
		buf.WriteString(typeURL)
		for _, res := range r.ByType(typeURL) {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(b)
			buf.WriteByte(0)
		}
	}
	return buf.Bytes()
}

// viewKeyInputs are the ClusterSets and policies TestViewKeysExact renders:
// every test ClusterSet, with no policy file and with every test policy
// that applies to it (failoverPriority on topology and on labels, failover,
// distribute, cluster keys).
func viewKeyInputs(t *testing.T) (out []struct {
	name   string
	cs     *discovery.ClusterSet
	policy Policy
}) {
	t.Helper()
	sets := []string{"testdata/splithorizon.yaml", "testdata/envoylb.yaml"}
	policies, _ := filepath.Glob("testdata/policy/*.yaml")
	for _, set := range sets {
		cs := fixture.ClusterSet(t, set)
		out = append(out, struct {
			name   string
			cs     *discovery.ClusterSet
			policy Policy
		}{filepath.Base(set), cs, Policy{}})
		for _, path := range policies {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			pol, err := policyfile.Parse(path, data, policyfile.TopologyOf(cs))
			if err != nil {
				continue // written for the other ClusterSet
			}
			out = append(out, struct {
				name   string
				cs     *discovery.ClusterSet
				policy Policy
			}{filepath.Base(set) + "+" + filepath.Base(path), cs, Policy{File: pol}})
		}
	}
	return out
}

// groupsOf lists the groups proxies can make of a ClusterSet under a policy:
// every role and cluster, with every locality the ClusterSet knows, its
// prefixes, made-up levels under each and none; and every value endpoints
// carry of the policy's label keys, a made-up value and none.
func groupsOf(cs *discovery.ClusterSet, p Policy) []Group {
	var locs []discovery.Locality
	add := func(l discovery.Locality) {
		for _, c := range []discovery.Locality{
			l, {Region: l.Region}, {Region: l.Region, Zone: l.Zone},
			{Region: l.Region, Zone: l.Zone, SubZone: "made-up"},
			{Region: l.Region, Zone: "made-up"}, {Region: "made-up"}, {},
		} {
			if !slices.Contains(locs, c) {
				locs = append(locs, c)
			}
		}
	}
	cs.Localities(add)
	labelSets := []string{""}
	for _, k := range p.LabelKeys() {
		vals := map[string]bool{"made-up": true}
		for i := range cs.Clusters {
			for j := range cs.Clusters[i].Services {
				for _, e := range cs.Clusters[i].Services[j].Endpoints {
					if v := e.Labels[k]; v != "" {
						vals[v] = true
					}
				}
			}
		}
		var next []string
		for _, prefix := range labelSets {
			next = append(next, prefix)
			for v := range vals {
				kv := k + "=" + v
				if prefix != "" {
					kv = prefix + "," + kv
				}
				next = append(next, kv)
			}
		}
		labelSets = next
	}
	var out []Group
	for _, role := range []Role{Sidecar, Proxyless, Gateway} {
		for i := range cs.Clusters {
			c := &cs.Clusters[i]
			for _, l := range locs {
				for _, labels := range labelSets {
					out = append(out, Group{Role: role, Cluster: c.Name, Network: c.Network, Locality: l, Labels: labels})
				}
			}
		}
	}
	return out
}

// TestViewKeysExact renders, for every test ClusterSet and policy, every
// group proxies can make and the view ViewKeys serves it, and requires the
// two byte-equal: merging views never changes what a proxy gets. It also
// requires that views do merge: gateways of a network, made-up localities
// and label values nobody carries.
func TestViewKeysExact(t *testing.T) {
	total, merged := 0, 0
	for _, in := range viewKeyInputs(t) {
		t.Run(in.name, func(t *testing.T) {
			keys := NewViewKeys(in.cs, in.policy)
			views := map[Group]bool{}
			groups := groupsOf(in.cs, in.policy)
			for _, g := range groups {
				// What a proxy of g is served today: its locality clamped
				// (Proxy.Resolve), nothing else reduced.
				direct := g
				direct.Locality = in.cs.ClampLocality(g.Cluster, g.Locality)
				if g.Locality == (discovery.Locality{}) {
					c, _ := in.cs.Cluster(g.Cluster)
					direct.Locality = c.Locality
				}
				k := keys.Of(direct)
				views[k] = true
				want, err := Translate(in.cs, direct, in.policy)
				if err != nil {
					t.Fatalf("%s: %v", direct, err)
				}
				got, err := Translate(in.cs, k, in.policy)
				if err != nil {
					t.Fatalf("view %s of %s: %v", k, direct, err)
				}
				if err := Check(got, in.cs, k); err != nil {
					t.Fatalf("view %s of %s: %v", k, direct, err)
				}
				if !bytes.Equal(viewBytes(t, want), viewBytes(t, got)) {
					t.Errorf("group %s is served view %s, whose resources differ from its own", direct, k)
				}
				if keys.Of(k) != k {
					t.Errorf("view %s of %s is not its own view (%s)", k, direct, keys.Of(k))
				}
			}
			direct := map[Group]bool{}
			for _, g := range groups {
				g.Locality = in.cs.ClampLocality(g.Cluster, g.Locality)
				direct[g] = true
			}
			total += len(direct)
			merged += len(direct) - len(views)
			t.Logf("%d groups, %d after clamping, %d views", len(groups), len(direct), len(views))
		})
	}
	if merged == 0 {
		t.Fatalf("no two of %d groups share a view", total)
	}
}

// TestViewKeysMerge names the merges a mesh relies on.
func TestViewKeysMerge(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/splithorizon.yaml")
	keys := NewViewKeys(cs, Policy{})
	var gateways []Group
	for i := range cs.Clusters {
		c := &cs.Clusters[i]
		gateways = append(gateways, Group{Role: Gateway, Cluster: c.Name, Network: c.Network, Locality: c.Locality})
	}
	byNetwork := map[string]Group{}
	for _, g := range gateways {
		k := keys.Of(g)
		if prev, ok := byNetwork[g.Network]; ok && prev != k {
			t.Errorf("gateways of network %s are served %s and %s", g.Network, prev, k)
		}
		byNetwork[g.Network] = k
	}
	if len(byNetwork) == len(gateways) {
		t.Errorf("%d gateways on %d networks: no two share a view; the fixture needs two clusters on one network", len(gateways), len(byNetwork))
	}

	// Without a policy file locality ranks on [region, zone]: a sub-zone no
	// endpoint has matters to nothing.
	c := &cs.Clusters[0]
	base := Group{Role: Sidecar, Cluster: c.Name, Network: c.Network, Locality: c.Locality}
	sub := base
	sub.Locality.SubZone = "rack-" + strings.Repeat("9", 3)
	if keys.Of(sub) != keys.Of(base) {
		t.Errorf("sub-zone %q splits the view: %s, %s", sub.Locality.SubZone, keys.Of(sub), keys.Of(base))
	}

	// A label the policy ranks on matters only with a value some endpoint
	// carries.
	pol := Policy{File: fixture.Policy(t, "testdata/policy/tier.yaml", cs)}
	keys = NewViewKeys(cs, pol)
	web, nobody, none := base, base, base
	web.Labels, nobody.Labels = "tier=web", "tier=nobody"
	if keys.Of(nobody) != keys.Of(none) {
		t.Errorf("tier=nobody splits the view: %s, %s", keys.Of(nobody), keys.Of(none))
	}
	if keys.Of(web) == keys.Of(none) {
		t.Errorf("tier=web, which endpoints carry, shares the view of a proxy without it: %s", keys.Of(web))
	}
}
