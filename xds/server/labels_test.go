package server

import (
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
	"github.com/horizonmesh/horizon/xds"
)

// A request's group follows the label keys of the policy rendered last.
func TestCacheGroupFollowsLabelKeys(t *testing.T) {
	cs := fixture.ClusterSet(t, "../testdata/splithorizon.yaml")
	c := NewCache(nil, NewMetrics(prometheus.NewRegistry()), func(*discovery.ClusterSet, xds.Group) (*xds.Resources, error) {
		return &xds.Resources{}, nil
	})
	s, err := structpb.NewStruct(map[string]any{"tier": "web", "app": "echo"})
	if err != nil {
		t.Fatal(err)
	}
	n := &core.Node{Id: "p", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		xds.MetaClusterID: structpb.NewStringValue("east-a"),
		xds.MetaLabels:    structpb.NewStructValue(s),
	}}}
	group := func() xds.Group {
		t.Helper()
		c.mu.Lock()
		defer c.mu.Unlock()
		g, err := c.groupOfLocked(n)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if err := c.Update(cs); err != nil {
		t.Fatal(err)
	}
	if g := group(); g.Labels != "" {
		t.Errorf("no label keys: group %s", g)
	}
	if err := c.Render(cs, "tier", []string{"tier"}); err != nil {
		t.Fatal(err)
	}
	if g := group(); g.Labels != "tier=web" {
		t.Errorf("keys [tier]: group %s", g)
	}
}
