package mcs

import (
	"maps"
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

// TestImportMetadata: Horizon sets the exported labels and annotations,
// removes the ones it set before and no longer wants, records which keys
// are its own, and leaves everyone else's keys alone.
func TestImportMetadata(t *testing.T) {
	type m = map[string]string
	for _, tc := range []struct {
		name                   string
		curLabels, curAnnots   m // nil cur when both are nil and create is set
		create                 bool
		wantLabels, wantAnnots m // the Import's
		labels, annots         m // the result
	}{{
		name:   "create without exported metadata",
		create: true,
		labels: m{LabelManagedBy: ManagedByHorizon},
	}, {
		name:       "create",
		create:     true,
		wantLabels: m{"tier": "web", "team": "a"}, wantAnnots: m{"owner": "x"},
		labels: m{LabelManagedBy: ManagedByHorizon, "tier": "web", "team": "a"},
		annots: m{"owner": "x", AnnotationExportedLabels: "team,tier", AnnotationExportedAnnotations: "owner"},
	}, {
		name:       "a label stops being exported; others' keys stay",
		curLabels:  m{LabelManagedBy: ManagedByHorizon, "tier": "web", "team": "a", "theirs": "1"},
		curAnnots:  m{"owner": "x", "note": "kept", AnnotationExportedLabels: "team,tier", AnnotationExportedAnnotations: "owner"},
		wantLabels: m{"tier": "api"},
		labels:     m{LabelManagedBy: ManagedByHorizon, "tier": "api", "theirs": "1"},
		annots:     m{"note": "kept", AnnotationExportedLabels: "tier"},
	}, {
		name:      "nothing exported any more",
		curLabels: m{LabelManagedBy: ManagedByHorizon, "tier": "web"},
		curAnnots: m{"owner": "x", AnnotationExportedLabels: "tier", AnnotationExportedAnnotations: "owner"},
		labels:    m{LabelManagedBy: ManagedByHorizon},
	}, {
		name:       "a key someone else set becomes exported, then Horizon's",
		curLabels:  m{LabelManagedBy: ManagedByHorizon, "tier": "theirs"},
		wantLabels: m{"tier": "web"},
		labels:     m{LabelManagedBy: ManagedByHorizon, "tier": "web"},
		annots:     m{AnnotationExportedLabels: "tier"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var cur *mcsv1beta1.ServiceImport
			if !tc.create {
				cur = imp("1")
				cur.Labels, cur.Annotations = tc.curLabels, tc.curAnnots
			}
			want := Import{Labels: tc.wantLabels, Annotations: tc.wantAnnots}
			labels, annots := importMetadata(cur, want)
			if !maps.Equal(labels, tc.labels) || !maps.Equal(annots, tc.annots) {
				t.Errorf("got labels %v annotations %v, want %v %v", labels, annots, tc.labels, tc.annots)
			}
			if cur != nil {
				after := cur.DeepCopy()
				after.Labels, after.Annotations = labels, annots
				if !metadataEqual(after, want) {
					t.Error("the result is not stable: a second round would write again")
				}
				unchanged := maps.Equal(cur.Labels, labels) && maps.Equal(cur.Annotations, annots)
				if unchanged != metadataEqual(cur, want) {
					t.Error("metadataEqual disagrees with importMetadata")
				}
			}
		})
	}
}
