package mcs

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

func imp(rv string) *mcsv1beta1.ServiceImport {
	return &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo", ResourceVersion: rv}}
}

// TestMemo: what the controller wrote wins over a cache that still shows a
// version the writes replaced, including one the controller wrote itself on
// the way; a cache that shows the last write, or anyone else's, wins.
func TestMemo(t *testing.T) {
	inCache := func(rv string) cached[*mcsv1beta1.ServiceImport] {
		if rv == "" {
			return cached[*mcsv1beta1.ServiceImport]{}
		}
		return cached[*mcsv1beta1.ServiceImport]{imp(rv), true}
	}
	for _, tc := range []struct {
		cache  string // the cache's version after the writes ("" = absent)
		want   string // the version latest returns ("" = absent)
		pruned bool
	}{
		{cache: "", want: "2"},                // the create not seen yet
		{cache: "1", want: "2"},               // the create seen, its status not
		{cache: "2", want: "2", pruned: true}, // caught up
		{cache: "9", want: "9", pruned: true}, // someone else wrote since
	} {
		m := map[string]written[*mcsv1beta1.ServiceImport]{}
		// A create over an empty cache, then a status update, both before
		// the cache moved.
		remember(m, "demo/echo", "", imp("1"), false)
		remember(m, "demo/echo", "", imp("2"), false)
		got, ok := latest(m, "demo/echo", inCache(tc.cache))
		rv := ""
		if ok {
			rv = got.ResourceVersion
		}
		if rv != tc.want {
			t.Errorf("cache at %q: latest %q, want %q", tc.cache, rv, tc.want)
		}
		if _, kept := m["demo/echo"]; kept == tc.pruned {
			t.Errorf("cache at %q: memory kept=%v", tc.cache, kept)
		}
	}

	// A deletion hides the cached object until the cache drops it.
	m := map[string]written[*mcsv1beta1.ServiceImport]{}
	remember(m, "demo/echo", "5", imp("5"), true)
	if _, ok := latest(m, "demo/echo", inCache("5")); ok {
		t.Error("deleted import still current")
	}
	if _, ok := latest(m, "demo/echo", inCache("")); ok {
		t.Error("deleted import back")
	}
}
