package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestServeInjector runs `horizon serve --injector-address` with Horizon as
// the CA: the webhook's certificate chains to the root for 127.0.0.1, a
// review for a member cluster comes back with a patch, one for another
// cluster is refused, and an edit of the config file is picked up.
func TestServeInjector(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	var out, errb testkit.Buffer
	if err := run(t.Context(), []string{"ca", "init", "--trust-domain", "cluster.local", "--out", caDir}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "injector.yaml")
	base, err := os.ReadFile("../../inject/testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, base, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--ca-dir", caDir, "--mtls-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
			"--injector-address", addr, "--injector-config", conf, "--injector-ip-sans", "127.0.0.1"}, &out, &errb)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, errb.String())
		}
	}()

	rootPEM, err := os.ReadFile(filepath.Join(caDir, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	testkit.Eventually(t, 10*time.Second, "injector /healthz over TLS", func() error {
		resp, err := client.Get("https://" + addr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})

	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "demo"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "demo:dev"}}},
	}
	raw, _ := json.Marshal(pod)
	review := func(cluster string) *admissionv1.AdmissionResponse {
		t.Helper()
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create,
				Namespace: "demo", Name: "echo", Object: runtime.RawExtension{Raw: raw},
			},
		})
		resp, err := client.Post("https://"+addr+"/inject/"+cluster, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var got admissionv1.AdmissionReview
		if err := json.Unmarshal(data, &got); err != nil || got.Response == nil {
			t.Fatalf("%s: %s (%v)", resp.Status, data, err)
		}
		if got.Response.UID != "u1" {
			t.Errorf("response uid %q", got.Response.UID)
		}
		return got.Response
	}
	r := review("west-1")
	if !r.Allowed || !strings.Contains(string(r.Patch), "horizon-proxy") || !strings.Contains(string(r.Patch), "--network=west") {
		t.Errorf("west-1: allowed %v, patch %s", r.Allowed, r.Patch)
	}
	if !strings.Contains(string(r.Patch), "BEGIN CERTIFICATE") {
		t.Error("the patch carries no trust bundle")
	}
	r = review("north")
	if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, `cluster "north" is not a member`) {
		t.Errorf("north: %+v", r)
	}

	// The config is reloaded on change.
	if err := os.WriteFile(conf, bytes.Replace(base, []byte("envoyproxy/envoy:v1.36.2"), []byte("envoyproxy/envoy:v1.37.0"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the new proxy image", func() bool {
		return strings.Contains(string(review("west-1").Patch), "envoyproxy/envoy:v1.37.0")
	})
}
