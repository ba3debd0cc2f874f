package kube

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
)

// TestConfigMapStore against a real API server: a round trip; only the
// writer writes; what is stored is refused for the same reasons as a file,
// with the ConfigMap named.
func TestConfigMapStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	cp := kubetest.Start(t, "cp")[0]
	ctx := t.Context()
	if _, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "horizon-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var leader atomic.Bool
	store := &ConfigMapStore{Kube: cp.Kube, Namespace: "horizon-system", Writer: leader.Load}
	cms := cp.Kube.CoreV1().ConfigMaps("horizon-system")

	want := testState("east", 3)
	if err := store.Save(want); !errors.Is(err, ErrNotWriter) {
		t.Fatalf("a replica that does not lead saved: %v", err)
	}
	if _, err := cms.Get(ctx, "horizon-state-east", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("ConfigMap written by a replica that does not lead: %v", err)
	}
	if s, err := store.Load("east"); s != nil || err != nil {
		t.Fatalf("no ConfigMap: %v %v, want nothing", s, err)
	}

	leader.Store(true)
	for range 2 { // create, then update
		if err := store.Save(want); err != nil {
			t.Fatal(err)
		}
	}
	got, err := store.Load("east")
	if err != nil {
		t.Fatal(err)
	}
	if got.Origin != "ConfigMap horizon-system/horizon-state-east" {
		t.Fatalf("origin %q", got.Origin)
	}
	got.Format, got.Origin = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}

	// Stored content refused: each testdata file, gzipped into the ConfigMap.
	put := func(data map[string][]byte) {
		t.Helper()
		cm, err := cms.Get(ctx, "horizon-state-east", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.BinaryData = data
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	gz := func(file string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "state", file))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name   string
		data   map[string][]byte
		reason string
	}{
		{"not gzip", map[string][]byte{ConfigMapStateKey: []byte("{}")}, StateCorrupt},
		{"no key", map[string][]byte{"other": gz("east.json")}, StateCorrupt},
		{"truncated", map[string][]byte{ConfigMapStateKey: gz("truncated.json")}, StateCorrupt},
		{"other format", map[string][]byte{ConfigMapStateKey: gz("version.json")}, StateVersion},
		{"other member", map[string][]byte{ConfigMapStateKey: gz("othermember.json")}, StateForeign},
	} {
		put(tc.data)
		_, err := store.Load("east")
		if stateReason(err) != tc.reason || !strings.Contains(err.Error(), "ConfigMap horizon-system/horizon-state-east") {
			t.Errorf("%s: %v, want %s naming the ConfigMap", tc.name, err, tc.reason)
		}
	}

	// Too large for a ConfigMap: refused before it is written.
	big := testState("east", 12000)
	for i := range big.Cluster.Services[0].Endpoints {
		noise := make([]byte, 100) // incompressible
		rand.Read(noise)
		big.Cluster.Services[0].Endpoints[i].Labels = map[string]string{"noise": hex.EncodeToString(noise)}
	}
	if err := store.Save(big); err == nil || !strings.Contains(err.Error(), "more than a ConfigMap holds") {
		t.Fatalf("a state larger than a ConfigMap: %v", err)
	}
	// A name Kubernetes refuses.
	if err := store.Save(testState("East_1", 1)); err == nil || !strings.Contains(err.Error(), "ConfigMap name") {
		t.Fatalf("member East_1: %v", err)
	}
}
