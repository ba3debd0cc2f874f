package xds

import (
	"errors"
	"maps"
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
)

func labelsNode(labels *structpb.Value) *core.Node {
	return &core.Node{Id: "p", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		MetaClusterID: structpb.NewStringValue("east-a"),
		MetaLabels:    labels,
	}}}
}

func TestParseNodeLabels(t *testing.T) {
	str := func(m map[string]any) *structpb.Value {
		s, err := structpb.NewStruct(m)
		if err != nil {
			t.Fatal(err)
		}
		return structpb.NewStructValue(s)
	}
	tests := []struct {
		name   string
		labels *structpb.Value
		want   map[string]string
		err    string
	}{
		{"labels", str(map[string]any{"tier": "web", "app.kubernetes.io/name": "echo", "empty": ""}),
			map[string]string{"tier": "web", "app.kubernetes.io/name": "echo", "empty": ""}, ""},
		{"none", str(map[string]any{}), nil, ""},
		{"not a map", structpb.NewStringValue("tier=web"), nil, "metadata LABELS must be a map of strings"},
		{"not a string", str(map[string]any{"tier": 3}), nil, "metadata LABELS[tier] must be a string"},
		{"not a label value", str(map[string]any{"tier": "web,app=x"}), nil, `metadata LABELS[tier]="web,app=x" is not a label value`},
		{"not a label key", str(map[string]any{"a=b": "x"}), nil, `label name "a=b" is not a label key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseNode(labelsNode(tt.labels))
			if tt.err != "" {
				if !errors.Is(err, ErrBadNode) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(p.Labels, tt.want) || (p.Labels == nil) != (tt.want == nil) {
				t.Errorf("labels %v, want %v", p.Labels, tt.want)
			}
		})
	}
}

// A group carries the values of exactly the label keys the policy ranks on:
// none without such keys (the group is the one of a proxy without labels),
// and proxies that differ only in other labels share a view.
func TestGroupLabels(t *testing.T) {
	loc := discovery.Locality{Region: "us-east", Zone: "us-east-1a"}
	base := Group{Role: Sidecar, Cluster: "east-a", Network: "east", Locality: loc}
	p := &Proxy{ID: "p", Role: Sidecar, Cluster: "east-a", Network: "east", Locality: loc,
		Labels: map[string]string{"tier": "web", "app": "echo", "version": "v1", "empty": ""}}
	if g := p.Group(); g != base || g.String() != "sidecar~east-a~east~us-east/us-east-1a/" {
		t.Errorf("Group() = %+v (%s), want %+v", g, g, base)
	}
	if g := p.GroupFor(nil); g != base {
		t.Errorf("GroupFor(nil) = %+v, want %+v", g, base)
	}
	g := p.GroupFor([]string{"version", "tier", "missing", "empty"})
	if g.Labels != "tier=web,version=v1" || g.String() != "sidecar~east-a~east~us-east/us-east-1a/~tier=web,version=v1" {
		t.Errorf("GroupFor = %q (%s)", g.Labels, g)
	}
	if got, want := g.labels(), map[string]string{"tier": "web", "version": "v1"}; !maps.Equal(got, want) {
		t.Errorf("labels() = %v, want %v", got, want)
	}
	other := &Proxy{ID: "q", Role: Sidecar, Cluster: "east-a", Network: "east", Locality: loc,
		Labels: map[string]string{"tier": "web", "app": "other"}}
	if a, b := p.GroupFor([]string{"tier"}), other.GroupFor([]string{"tier"}); a != b {
		t.Errorf("proxies with the same tier differ: %s, %s", a, b)
	}
}

func TestPolicyLabelKeys(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/splithorizon.yaml")
	if keys := (Policy{}).LabelKeys(); keys != nil {
		t.Errorf("no file: %v", keys)
	}
	if keys := (Policy{File: fixture.Policy(t, "testdata/policy/network-cluster.yaml", cs)}).LabelKeys(); keys != nil {
		t.Errorf("topology keys only: %v", keys)
	}
	if keys := (Policy{File: fixture.Policy(t, "testdata/policy/tier.yaml", cs)}).LabelKeys(); len(keys) != 1 || keys[0] != "tier" {
		t.Errorf("tier.yaml: %v", keys)
	}
}
