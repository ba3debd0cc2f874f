package server

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
	"github.com/horizonmesh/horizon/xds"
)

// TestFailedViewKeepsLastGood: a view that fails to render or check is not
// published; the proxies of that view keep the last good resources, and the
// failure is counted.
func TestFailedViewKeepsLastGood(t *testing.T) {
	good := fixture.ClusterSet(t, "../testdata/protocol.yaml")
	bad := fixture.ClusterSet(t, "../testdata/splithorizon.yaml")
	m := NewMetrics(prometheus.NewRegistry())
	c := NewCache(nil, m, func(cs *discovery.ClusterSet, g xds.Group) (*xds.Resources, error) {
		if cs == bad {
			return nil, errors.New("rendering failed")
		}
		res, err := xds.Translate(cs, g, xds.Policy{})
		if err == nil {
			err = xds.Check(res, cs, g)
		}
		return res, err
	})
	if err := c.Update(good); err != nil {
		t.Fatal(err)
	}
	g := xds.Group{Role: xds.Sidecar, Cluster: "east-1", Network: "east", Locality: discovery.Locality{Region: "us-east", Zone: "us-east-1a"}}
	c.mu.Lock()
	if _, err := c.viewLocked(g); err != nil {
		t.Fatal(err)
	}
	c.mu.Unlock()
	before, _ := c.View(g)

	if err := c.Update(bad); err == nil {
		t.Fatal("Update reported no error for a view that failed")
	}
	after, _ := c.View(g)
	if after.Resources != before.Resources || after.Versions[xds.TypeURLs[0]] != before.Versions[xds.TypeURLs[0]] {
		t.Fatal("a failed render replaced the last good view")
	}
	if got := testutil.ToFloat64(m.buildErrors); got != 1 {
		t.Errorf("view_build_errors_total = %v, want 1", got)
	}
}
