package kube

import (
	"context"
	"net/http"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

type okTransport struct{}

func (okTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
}

// TestRelistCounter: which requests of a member's informers count as lists
// (horizon_kube_relists_total counts those after the initial sync).
func TestRelistCounter(t *testing.T) {
	slices := collectionPath(discoveryv1.SchemeGroupVersion.WithResource("endpointslices"))
	cases := []struct {
		name, method, url string
		ctx               context.Context
		list              bool
	}{
		{"list", http.MethodGet, slices + "?limit=500&resourceVersion=0", t.Context(), true},
		{"watch-list", http.MethodGet, slices + "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan", t.Context(), true},
		{"watch", http.MethodGet, slices + "?watch=true&resourceVersion=42&allowWatchBookmarks=true", t.Context(), false},
		{"watch=1", http.MethodGet, slices + "?watch=1&resourceVersion=42", t.Context(), false},
		{"one object", http.MethodGet, "/api/v1/nodes/node-1", t.Context(), false},
		{"core list", http.MethodGet, "/api/v1/pods?limit=500", t.Context(), true},
		{"another collection", http.MethodGet, "/api/v1/secrets?limit=500", t.Context(), false},
		{"a write", http.MethodPost, "/apis/multicluster.x-k8s.io/v1beta1/serviceimports", t.Context(), false},
		{"Horizon's own recheck", http.MethodGet, slices + "?limit=1", withoutRelistCount(t.Context()), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := 0
			rc := &relistCounter{next: okTransport{}, relisted: func() { n++ }, collections: map[string]bool{
				slices: true, "/api/v1/pods": true, "/api/v1/nodes": true,
				"/apis/multicluster.x-k8s.io/v1beta1/serviceimports": true,
			}}
			req, err := http.NewRequestWithContext(c.ctx, c.method, "https://member.example"+c.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rc.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
			if got := n == 1; got != c.list {
				t.Errorf("%s %s counted %d times; want a list: %v", c.method, c.url, n, c.list)
			}
		})
	}
	if got := collectionPath(discoveryv1.SchemeGroupVersion.WithResource("endpointslices")); got != "/apis/discovery.k8s.io/v1/endpointslices" {
		t.Errorf("collectionPath = %q", got)
	}
}
