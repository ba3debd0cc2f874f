package kube

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestMemberRefused: a stand-in API server whose /readyz keeps answering
// (it is public in Kubernetes) refuses every list and watch with 403 once
// told to, and ends the open watches. The member goes stale with reason
// forbidden, counted per member and reason; allowed again, it is synced.
// TestF2Forbidden in internal/chaos runs the same fault against a real
// kube-apiserver whose RBAC binding is deleted.
func TestMemberRefused(t *testing.T) {
	var forbid atomic.Bool
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, watch, ok := parseRequest(r)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case !ok:
			io.WriteString(w, "ok")
		case forbid.Load():
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"forbidden"}`)
		case watch && r.URL.Query().Get("sendInitialEvents") == "true":
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"BadRequest","code":400}`)
		case watch:
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		case req.verb == "list" && r.URL.Query().Get("limit") == "1":
			// The health probe's recheck, with the dynamic client: it
			// needs a kind, as a real API server gives.
			io.WriteString(w, `{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}`)
		case req.verb == "list":
			io.WriteString(w, `{"metadata":{"resourceVersion":"1"},"items":[]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
		}
	}))
	defer srv.Close()

	m, err := NewMember(MemberConfig{Name: "east", Network: "east", Rest: &rest.Config{Host: srv.URL}}, nil, func() {})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m.metrics = NewMetrics(reg)
	m.probe = 300 * time.Millisecond
	done := make(chan error, 1)
	ctx := t.Context()
	go func() { done <- m.Run(ctx) }()
	testkit.Eventually(t, 30*time.Second, "synced", func() error {
		if st := m.State(); st != Synced {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
	forbid.Store(true)
	close(stop) // the open watches end; the informers ask again and are refused
	testkit.Eventually(t, 30*time.Second, "stale, forbidden", func() error {
		if st, r := m.State(), m.Reason(); st != Stale || r != ReasonForbidden {
			return fmt.Errorf("state %s, reason %q", st, r)
		}
		return nil
	})
	if n := testutil.ToFloat64(m.metrics.lwErrs.WithLabelValues("east", ReasonForbidden)); n == 0 {
		t.Error(`horizon_kube_list_watch_errors_total{cluster="east",reason="forbidden"} = 0`)
	}
	// The health probe keeps it stale while the resources are refused,
	// though /readyz answers.
	time.Sleep(5 * m.probe)
	if st := m.State(); st != Stale {
		t.Errorf("state %s while every list is refused; want stale", st)
	}
	forbid.Store(false)
	testkit.Eventually(t, 30*time.Second, "synced again", func() error {
		if st, r := m.State(), m.Reason(); st != Synced || r != "" {
			return fmt.Errorf("state %s, reason %q", st, r)
		}
		return nil
	})
}
