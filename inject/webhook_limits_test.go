package inject

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/horizonmesh/horizon/discovery"
)

// TestWebhookRefusesBadRequests: oversized bodies, bad cluster names and
// bodies that are no review get an HTTP error; a review of something else
// than a pod CREATE is allowed unchanged.
func TestWebhookRefusesBadRequests(t *testing.T) {
	wh := NewWebhook(Config{}, Resolver{ClusterSet: func() *discovery.ClusterSet { return nil }}, NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(wh.Handler())
	defer srv.Close()
	post := func(path string, body []byte) (int, string) {
		resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, _ := post("/inject/west", bytes.Repeat([]byte(" "), MaxReviewBytes+1)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", code)
	}
	if code, _ := post("/inject/West_1", []byte("{}")); code != http.StatusNotFound {
		t.Errorf("bad cluster name: %d", code)
	}
	if code, _ := post("/inject/west", []byte(`{"kind":"AdmissionReview"}`)); code != http.StatusBadRequest {
		t.Errorf("review without request: %d", code)
	}
	body, _ := json.Marshal(admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{
		UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Service"}, Operation: admissionv1.Create,
	}})
	code, out := post("/inject/west", body)
	if code != http.StatusOK || !strings.Contains(out, `"allowed":true`) || strings.Contains(out, "patch") {
		t.Errorf("a Service: %d %s", code, out)
	}
	// A pod while Horizon has no ClusterSet yet is refused, not admitted
	// unmeshed.
	body, _ = json.Marshal(admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{
		UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create, Namespace: "demo",
		Object: rawPod(t),
	}})
	code, out = post("/inject/west", body)
	if code != http.StatusOK || !strings.Contains(out, `"allowed":false`) || !strings.Contains(out, "Horizon is starting") {
		t.Errorf("a pod before the first ClusterSet: %d %s", code, out)
	}
}

func rawPod(t *testing.T) runtime.RawExtension {
	raw, err := json.Marshal(readPod(t, "testdata/pods/sidecar.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return runtime.RawExtension{Raw: raw}
}
