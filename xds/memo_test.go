package xds

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/discovery"
)

// TestIncrementalRenderIsExact: rendering a view from its previous render
// (memo.go) gives byte-equal resources, notes and checks to rendering it
// from scratch, over a chain of edits to every golden case's ClusterSet —
// and it does reuse what did not change.
func TestIncrementalRenderIsExact(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	// Each edit changes a fresh copy of a case's clusters; the edits are
	// applied one after another, so every render follows a different one.
	edits := []struct {
		name string
		fn   func(cs []discovery.Cluster) bool // false: not applicable
	}{
		{"endpoint address", func(cs []discovery.Cluster) bool {
			return firstEndpoint(cs, func(e *discovery.Endpoint) { e.Address = "10.99.0.1" })
		}},
		{"endpoint not ready", func(cs []discovery.Cluster) bool {
			return firstEndpoint(cs, func(e *discovery.Endpoint) { e.Ready = !e.Ready })
		}},
		{"gateway port", func(cs []discovery.Cluster) bool {
			for i := range cs {
				if len(cs[i].Gateways) > 0 {
					cs[i].Gateways = slices.Clone(cs[i].Gateways)
					cs[i].Gateways[0].Port++
					return true
				}
			}
			return false
		}},
		{"service dropped", func(cs []discovery.Cluster) bool {
			for i := range cs {
				if len(cs[i].Services) > 1 {
					cs[i].Services = slices.Clone(cs[i].Services[1:])
					return true
				}
			}
			return false
		}},
		{"endpoint added", func(cs []discovery.Cluster) bool {
			for i := range cs {
				for j := range cs[i].Services {
					s := &cs[i].Services[j]
					if len(s.Endpoints) > 0 {
						e := s.Endpoints[0]
						e.Address = "10.99.0.2"
						s.Endpoints = append(slices.Clone(s.Endpoints), e)
						return true
					}
				}
			}
			return false
		}},
		{"locality", func(cs []discovery.Cluster) bool {
			cs[len(cs)-1].Locality.Zone += "-moved"
			return true
		}},
		{"virtual IPs", func(cs []discovery.Cluster) bool {
			changed := false
			for i := range cs {
				cs[i].Services = slices.Clone(cs[i].Services)
				for j := range cs[i].Services {
					if s := &cs[i].Services[j]; s.ClusterIP != "" {
						s.ClusterIP = fmt.Sprintf("10.250.%d.%d", i, j)
						changed = true
					}
				}
			}
			return changed
		}},
		{"service dropped everywhere", func(cs []discovery.Cluster) bool {
			var drop string
			for i := range cs {
				if len(cs[i].Services) > 0 {
					drop = cs[i].Services[len(cs[i].Services)-1].Name
					break
				}
			}
			for i := range cs {
				cs[i].Services = slices.DeleteFunc(slices.Clone(cs[i].Services), func(s discovery.Service) bool { return s.Name == drop })
			}
			return drop != ""
		}},
		{"aliases", func(cs []discovery.Cluster) bool {
			changed := false
			for i := range cs {
				cs[i].Services = slices.Clone(cs[i].Services)
				for j := range cs[i].Services {
					s := &cs[i].Services[j]
					s.Aliases = append(slices.Clone(s.Aliases), s.Name+"."+s.Namespace+".global")
					changed = true
				}
			}
			return changed
		}},
		{"nothing", func([]discovery.Cluster) bool { return true }},
	}
	reused := 0
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			_, g, p := loadCase(t, in)
			var prev *Memo
			for step := range len(edits) + 1 {
				cs, _, _ := loadCase(t, in)
				clusters := cs.Clusters
				label := "base"
				if step > 0 {
					// The edits up to this step, cumulatively.
					for _, e := range edits[:step] {
						e.fn(clusters)
					}
					label = edits[step-1].name
				}
				next, err := discovery.New(clusters)
				if err != nil {
					t.Fatalf("%s: %v", label, err)
				}
				fresh, ferr := Translate(next, g, p)
				inc, memo, ierr := translate(next, g, p, prev)
				if (ferr == nil) != (ierr == nil) {
					t.Fatalf("%s: fresh error %v, incremental error %v", label, ferr, ierr)
				}
				if ferr != nil {
					continue
				}
				if d := diffResources(fresh, inc); d != "" {
					t.Fatalf("after %q: incremental render differs: %s", label, d)
				}
				if (Check(fresh, next, g) == nil) != (Check(inc, next, g) == nil) {
					t.Fatalf("after %q: Check disagrees", label)
				}
				reused += len(memo.reused)
				prev = memo
			}
		})
	}
	if reused == 0 {
		t.Fatal("no render reused anything: the memo is never hit")
	}
}

// TestIncrementalRenderPolicyChange: a render under another policy or for
// another group reuses nothing.
func TestIncrementalRenderPolicyChange(t *testing.T) {
	cs, g, p := loadCase(t, "testdata/golden/sidecar-east-1.in.yaml")
	_, first, err := translate(cs, g, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, again, err := translate(cs, g, p, first)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.reused) == 0 {
		t.Fatal("an unchanged ClusterSet reused nothing")
	}
	p2 := p
	p2.SVIDProvider = SVIDFromSPIRE
	_, other, err := translate(cs, g, p2, first)
	if err != nil {
		t.Fatal(err)
	}
	if len(other.reused) != 0 {
		t.Fatalf("a render under another policy reused %d messages", len(other.reused))
	}
	g2 := g
	g2.Locality.Zone += "-other"
	if _, r, err := translate(cs, g2, p, first); err == nil && len(r.reused) != 0 {
		t.Fatalf("a render for another group reused %d messages", len(r.reused))
	}
}

func firstEndpoint(cs []discovery.Cluster, edit func(*discovery.Endpoint)) bool {
	for i := range cs {
		for j := range cs[i].Services {
			s := &cs[i].Services[j]
			if len(s.Endpoints) > 0 {
				s.Endpoints = slices.Clone(s.Endpoints)
				edit(&s.Endpoints[0])
				return true
			}
		}
	}
	return false
}

// diffResources compares two renders: every resource's deterministic
// bytes, the notes and the policy-fixed assignments.
func diffResources(a, b *Resources) string {
	for _, typeURL := range TypeURLs {
		ra, rb := a.ByType(typeURL), b.ByType(typeURL)
		if len(ra) != len(rb) {
			return fmt.Sprintf("%s: %d resources vs %d", ShortType(typeURL), len(ra), len(rb))
		}
		for i := range ra {
			ba, _ := proto.MarshalOptions{Deterministic: true}.Marshal(ra[i])
			bb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(rb[i])
			if !bytes.Equal(ba, bb) {
				return fmt.Sprintf("%s %q differs", ShortType(typeURL), ResourceName(ra[i]))
			}
		}
	}
	if !slices.Equal(a.Notes, b.Notes) {
		return fmt.Sprintf("notes %q vs %q", a.Notes, b.Notes)
	}
	for k, v := range a.fixedWeights {
		if b.fixedWeights[k] != v {
			return fmt.Sprintf("fixed weights of %s", k)
		}
	}
	if len(a.fixedWeights) != len(b.fixedWeights) {
		return "fixed weights differ"
	}
	return ""
}
