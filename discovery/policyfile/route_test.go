package policyfile

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestRouteSelect checks first-match order on examples/policy/routes.yaml:
// a request takes the first rule whose match holds, as Envoy evaluates a
// virtual host's routes ("the first route that matches is used",
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-field-config-route-v3-virtualhost-routes)
// and grpc-go does (gRFC A28).
func TestRouteSelect(t *testing.T) {
	p := mustParse(t, "../../examples/policy/routes.yaml")
	hr := p.RoutesFor("echo.demo.svc.clusterset.local")
	if hr == nil || len(hr.Rules) != 3 || len(hr.Subsets) != 2 {
		t.Fatalf("routes: %+v", hr)
	}
	if p.RoutesFor("echo.demo.svc.cluster.local") != nil {
		t.Fatal("cluster.local host has routes")
	}
	east := discovery.Locality{Region: "us-east", Zone: "us-east-1a"}
	west := discovery.Locality{Region: "us-west", Zone: "us-west-2a"}
	for _, tc := range []struct {
		name string
		req  Request
		want string // rule name, "" for none
	}{
		{"tester from west", Request{Path: "/x", Headers: map[string]string{"x-user": "tester"}, Cluster: "west-1", Locality: west}, "testers"},
		{"tester and geo: first wins", Request{Path: "/x", Headers: map[string]string{"x-user": "tester", "geo-location": "us-west-2"}, Cluster: "east-1", Locality: east}, "testers"},
		{"geo header", Request{Path: "/", Headers: map[string]string{"geo-location": "us-west-2"}, Cluster: "east-1", Locality: east}, "geo-west"},
		{"geo prefix does not hold", Request{Path: "/", Headers: map[string]string{"geo-location": "eu-us-west"}, Cluster: "west-1", Locality: west}, ""},
		{"east proxy, no header", Request{Path: "/a", Cluster: "east-2", Locality: east}, "east-split"},
		{"west proxy, no header", Request{Path: "/a", Cluster: "west-1", Locality: west}, ""},
		{"exact value differs", Request{Path: "/a", Headers: map[string]string{"x-user": "testers"}, Cluster: "west-1", Locality: west}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, why := hr.Select(tc.req)
			got := ""
			if i >= 0 {
				got = hr.Rules[i].Name
			}
			if got != tc.want {
				t.Fatalf("rule %q, want %q (why: %q)", got, tc.want, why)
			}
			if i >= 0 && len(why) != i || i < 0 && len(why) != len(hr.Rules) {
				t.Errorf("%d reasons for rule %d: %q", len(why), i, why)
			}
		})
	}
	split := hr.Rules[2].To
	if len(split) != 2 || split[0].Subset.Cluster != "east-1" || split[0].Weight != 70 || split[1].Weight != 30 {
		t.Errorf("east-split destinations: %+v", split)
	}
	gs := p.GatewaySubsets()[discovery.ServiceKey{Namespace: "demo", Name: "echo"}]
	var segs []string
	for _, s := range gs {
		segs = append(segs, s.Segment())
	}
	if want := []string{"all.east-1", "all.west-1", "v2"}; !equalStrings(segs, want) {
		t.Errorf("gateway subsets %q, want %q", segs, want)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRouteErrorsMetric: a file whose route rules contradict each other is
// rejected, the last good policy keeps serving, and
// horizon_policy_route_errors counts the route problems until a good edit.
func TestRouteErrorsMetric(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	path := filepath.Join(t.TempDir(), "policy.yaml")
	install(t, "routes-good.yaml", path)
	metrics := NewMetrics(prometheus.NewPedanticRegistry())
	updates := make(chan *File, 16)
	w := &Watcher{Path: path, OnUpdate: func(p *File) { updates <- p }, Metrics: metrics, pollOnly: true, PollInterval: 20e6}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	w.SetTopology(exampleTopology(t))
	good := nextUpdate(t, updates)
	if good.RoutesFor("echo.demo.svc.clusterset.local") == nil {
		t.Fatal("no routes")
	}
	install(t, "routes-bad.yaml", path)
	testkit.Eventually(t, wait, "the rejection", func() bool { return w.LastError() != nil })
	// Weights add up to 90; a rule after a catch-all; an unknown subset.
	if got := testutil.ToFloat64(metrics.routeErrors); got != 3 {
		t.Errorf("route errors = %v, want 3: %v", got, w.LastError())
	}
	if w.File() != good {
		t.Error("the serving policy changed")
	}
	install(t, "routes-good.yaml", path)
	testkit.Eventually(t, wait, "the fix", func() bool { return w.LastError() == nil })
	if got := testutil.ToFloat64(metrics.routeErrors); got != 0 {
		t.Errorf("route errors after the fix = %v", got)
	}
}
