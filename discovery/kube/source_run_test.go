package kube

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestSourceRunOwnsItsMembers: no member watches before Run; Run starts the
// members Set before it and while it runs, and once it returns no watcher
// is left. The members' API servers only ever answer 503.
func TestSourceRunOwnsItsMembers(t *testing.T) {
	defer goleak.VerifyNone(t, append([]goleak.Option{goleak.IgnoreCurrent()}, idleConns...)...)
	type apiServer struct {
		*httptest.Server
		hits atomic.Int64
	}
	newAPIServer := func() *apiServer {
		a := &apiServer{}
		a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.hits.Add(1)
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}))
		return a
	}
	east, west := newAPIServer(), newAPIServer()
	defer east.Close()
	defer west.Close()
	member := func(name string, a *apiServer) MemberConfig {
		return MemberConfig{Name: name, Network: "net-" + name, Rest: &rest.Config{Host: a.URL}}
	}

	src := NewSource(SourceOptions{})
	if err := src.Set(member("east", east)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := east.hits.Load(); n != 0 {
		t.Fatalf("east's API server had %d requests before Run", n)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	testkit.Eventually(t, wait, "east watched", func() bool { return east.hits.Load() > 0 })
	if err := src.Set(member("west", west)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, "west, added while running, watched", func() bool { return west.hits.Load() > 0 })
	if ms := src.Members(); len(ms) != 2 || ms[0].State != Syncing || ms[1].State != Syncing {
		t.Fatalf("members %+v, want east and west syncing", ms)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if src.Ready() {
		t.Fatal("Ready without a synced member")
	}
}
