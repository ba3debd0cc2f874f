package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
	"github.com/horizonmesh/horizon/xds"
)

// TestSetPolicyRerenders: a new policy file reaches every view without a
// ClusterSet change, changes the versions of the types whose output it
// changes, and leaves the others alone; the same policy again pushes
// nothing.
func TestSetPolicyRerenders(t *testing.T) {
	cs := fixture.ClusterSet(t, "../testdata/splithorizon.yaml")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s := New(ctx, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Policy: xds.Policy{}})
	g := xds.Group{Role: xds.Sidecar, Cluster: "east-a", Network: "east", Locality: discovery.Locality{Region: "us-east", Zone: "us-east-1a"}}
	if err := s.Apply(cs); err != nil {
		t.Fatal(err)
	}
	// The view a proxy of east-a would open.
	s.cache.mu.Lock()
	if _, err := s.cache.viewLocked(g); err != nil {
		s.cache.mu.Unlock()
		t.Fatal(err)
	}
	s.cache.mu.Unlock()
	before, ok := s.cache.View(g)
	if !ok {
		t.Fatal("no view")
	}
	go s.Run(ctx)

	waitVersions := func(what string, changed func(map[string]string) bool) map[string]string {
		t.Helper()
		var versions map[string]string
		testkit.Eventually(t, 5*time.Second, what, func() error {
			v, _ := s.cache.View(g)
			if versions = v.Versions; !changed(versions) {
				return fmt.Errorf("versions %v", versions)
			}
			return nil
		})
		return versions
	}
	s.SetPolicy(fixture.Policy(t, "../testdata/policy/traffic.yaml", cs))
	after := waitVersions("policy applied", func(v map[string]string) bool {
		return v[resourcev3.ClusterType] != before.Versions[resourcev3.ClusterType]
	})
	// traffic.yaml sets timeouts, outlier detection (CDS), retries (RDS) and
	// the overprovisioning factor and failover order (EDS); listeners do not
	// change.
	for _, typ := range []string{resourcev3.EndpointType, resourcev3.RouteType} {
		if after[typ] == before.Versions[typ] {
			t.Errorf("%s: version unchanged by the policy", typ)
		}
	}
	if after[resourcev3.ListenerType] != before.Versions[resourcev3.ListenerType] {
		t.Errorf("listeners re-versioned by a policy that does not touch them")
	}
	if s.Policy().File == nil {
		t.Fatal("Policy() has no file")
	}

	// The same policy again: nothing moves.
	s.SetPolicy(fixture.Policy(t, "../testdata/policy/traffic.yaml", cs))
	time.Sleep(100 * time.Millisecond) // let Run take it; a push would change the versions
	if v, _ := s.cache.View(g); !equalVersions(v.Versions, after) {
		t.Errorf("an unchanged policy changed versions: %v -> %v", after, v.Versions)
	}
}

func equalVersions(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
