package inject

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// configLine is where ParseConfig's errors start: the file, and the line
// when the problem has one.
var configLine = regexp.MustCompile(`^fuzz\.yaml(?::(\d+))?: \S`)

// FuzzParseConfig checks the injector's configuration parser on any input:
// no panic; every error line names the file (and a line inside it when it
// names one); an accepted configuration round-trips: written back as YAML
// and parsed again it is the same (same Version).
func FuzzParseConfig(f *testing.F) {
	paths, _ := filepath.Glob("testdata/config*.yaml")
	more, _ := filepath.Glob("testdata/config-invalid/*.yaml")
	for _, p := range append(paths, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz.yaml", data)
		if err != nil {
			lines := yamlLines(data)
			for l := range strings.Lines(err.Error()) {
				m := configLine.FindStringSubmatch(l)
				if m == nil {
					t.Fatalf("error line %q does not name fuzz.yaml", l)
				}
				if m[1] != "" && atoi(m[1]) > lines {
					t.Fatalf("error line %q: past the input's %d lines", l, lines)
				}
			}
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseConfig("again.yaml", out)
		if err != nil || again.Version() != c.Version() {
			t.Fatalf("round trip: %v\n%s", err, out)
		}
	})
}

func atoi(s string) int { // digits only, as the pattern matched
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
		if n > 1<<30 {
			break
		}
	}
	return n
}

// FuzzWebhook posts any body to the admission webhook of cluster west, as
// the apiserver would (seeds: a review of every testdata/pods input).
// Properties: no panic; an answer is an HTTP error, or a 200 with an
// AdmissionReview answering the request's UID; a denial carries a code and
// a message; a patch applies to the pod as the apiserver holds it, and
// gives a pod that passes checkInjected (names unique, mounts resolved,
// a second injection skipped).
func FuzzWebhook(f *testing.F) {
	fx := loadFixture(f)
	wh := NewWebhook(fx.cfg, fx.resolver, NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	h := wh.Handler()
	pods, _ := filepath.Glob("testdata/pods/*.in.yaml")
	review := func(kind string, op admissionv1.Operation, raw []byte) []byte {
		b, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "u-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: kind},
				Operation: op, Namespace: "demo", Object: runtime.RawExtension{Raw: raw}}})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	for _, p := range pods {
		raw, err := json.Marshal(readPod(f, p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(review("Pod", admissionv1.Create, raw))
	}
	f.Add(review("Pod", admissionv1.Update, []byte(`{}`)))
	f.Add(review("Service", admissionv1.Create, []byte(`{"spec":{}}`)))
	f.Add(review("Pod", admissionv1.Create, []byte(`{"spec":{"containers":"x"}}`)))
	f.Add([]byte(`{"request":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inject/west", bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			if rec.Code < 400 || rec.Code > 499 {
				t.Fatalf("status %d: want 200 or a client error", rec.Code)
			}
			return
		}
		var in, out admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
			t.Fatalf("200 for a body that is no review: %v", err)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("answer is no review: %v: %s", err, rec.Body.Bytes())
		}
		resp := out.Response
		switch {
		case resp.UID != in.Request.UID:
			t.Fatalf("answer's uid %q, request's %q", resp.UID, in.Request.UID)
		case !resp.Allowed && (resp.Result == nil || resp.Result.Code == 0 || resp.Result.Message == ""):
			t.Fatalf("denied without a code or message: %+v", resp.Result)
		case resp.Patch == nil:
			return
		}
		var pod corev1.Pod
		if err := json.Unmarshal(in.Request.Object.Raw, &pod); err != nil {
			t.Fatalf("a patch for an undecodable pod: %v", err)
		}
		if pod.Namespace == "" {
			pod.Namespace = in.Request.Namespace
		}
		patch, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("patch %s: %v", resp.Patch, err)
		}
		held, _ := json.Marshal(&pod)
		patched, err := patch.Apply(held)
		if err != nil {
			t.Fatalf("patch %s does not apply: %v", resp.Patch, err)
		}
		var injected corev1.Pod
		if err := json.Unmarshal(patched, &injected); err != nil {
			t.Fatalf("patched pod: %v", err)
		}
		if !wellFormed(&pod) {
			// The apiserver validates after the mutating webhooks: the
			// pod's own faults are not the injector's to check.
			if len(injected.Spec.Containers) < len(pod.Spec.Containers) {
				t.Fatal("the patch dropped containers of the pod")
			}
			return
		}
		checkInjected(t, fx, &pod, &injected)
	})
}

// wellFormed reports whether a pod passes the checks of checkInjected that
// are about the pod's own containers and volumes: unique DNS-label names,
// images, mounts of its volumes.
func wellFormed(pod *corev1.Pod) bool {
	names, vols := map[string]bool{}, map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if vols[v.Name] {
			return false
		}
		vols[v.Name] = true
	}
	for _, c := range pod.Spec.Containers {
		if c.RestartPolicy != nil {
			return false
		}
	}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if names[c.Name] || len(validation.IsDNS1123Label(c.Name)) > 0 || c.Image == "" {
			return false
		}
		names[c.Name] = true
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				return false
			}
		}
	}
	return true
}

// yamlLines is the number of lines of data as yaml.v3 counts them: "\r\n",
// "\r", "\n" and the Unicode breaks NEL, LS and PS each end one.
func yamlLines(data []byte) int {
	n := 1 + bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n"))
	for _, br := range []string{"\u0085", "\u2028", "\u2029"} {
		n += bytes.Count(data, []byte(br))
	}
	return n
}
