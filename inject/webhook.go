package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/filewatch"
)

// Limits of the webhook's HTTP server.
const (
	// MaxReviewBytes bounds an AdmissionReview's body: the apiserver's own
	// request limit for a pod is 3 MiB, and the review holds it once.
	MaxReviewBytes = 4 << 20
	// ReviewTimeout bounds one review; the webhook configuration's
	// timeoutSeconds (10) bounds the apiserver's wait.
	ReviewTimeout = 8 * time.Second
)

// Resolver finds a pod's Target: its cluster's network in the ClusterSet,
// its node's locality, Horizon's trust bundle.
type Resolver struct {
	ClusterSet func() *discovery.ClusterSet // nil until the first one
	// Node reads a node of a member cluster; nil: never (no locality from
	// nodes).
	Node func(ctx context.Context, cluster, name string) (*corev1.Node, error)
	// Bundle is the PEM trust bundle pods get.
	Bundle func() ([]byte, error)
	Log    *slog.Logger
}

// Target is the target of pod admitted by cluster. A node that cannot be
// read leaves the locality to Horizon (logged), it does not fail the pod.
func (r Resolver) Target(ctx context.Context, cluster string, pod *corev1.Pod) (Target, error) {
	cs := r.ClusterSet()
	if cs == nil {
		return Target{}, errors.New("no ClusterSet yet: Horizon is starting")
	}
	bundle, err := r.Bundle()
	if err != nil {
		return Target{}, fmt.Errorf("trust bundle: %w", err)
	}
	var node *corev1.Node
	if pod.Spec.NodeName != "" && r.Node != nil {
		if _, ok := cs.Cluster(cluster); ok {
			node, err = r.Node(ctx, cluster, pod.Spec.NodeName)
			if err != nil {
				r.Log.Warn("injector: node unreadable: the pod gets its cluster's locality", "cluster", cluster, "node", pod.Spec.NodeName, "namespace", pod.Namespace, "pod", podName(pod), "err", err)
				node = nil
			}
		}
	}
	return TargetFor(cs, cluster, node, bundle)
}

// Metrics of the webhook.
type Metrics struct {
	requests *prometheus.CounterVec
	duration prometheus.Histogram
	reloads  *filewatch.Reloads
}

// Results of horizon_injector_requests_total.
const (
	ResultInjected = "injected" // patched
	ResultSkipped  = "skipped"  // allowed unchanged (opted out, injected already, host network)
	ResultRefused  = "refused"  // denied: the pod is wrong (bad annotation) or its cluster unknown
	ResultError    = "error"    // not a valid review, or Horizon could not answer
)

// NewMetrics registers the webhook's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_injector_requests_total",
			Help: "Admission reviews of the sidecar injector, by result: injected, skipped, refused or error.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "horizon_injector_request_duration_seconds",
			Help:    "Time to answer an admission review.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5},
		}),
		reloads: filewatch.NewReloads(reg, "horizon_injector_config", "the injector configuration file"),
	}
	for _, r := range []string{ResultInjected, ResultSkipped, ResultRefused, ResultError} {
		m.requests.WithLabelValues(r)
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Webhook is the mutating admission webhook: POST /inject/<cluster> takes
// an admission.k8s.io/v1 AdmissionReview of a pod CREATE and answers with
// the patch that injects it.
type Webhook struct {
	config   atomic.Pointer[Config]
	resolver Resolver
	metrics  *Metrics
	log      *slog.Logger
}

// NewWebhook makes the webhook with its first configuration.
func NewWebhook(c Config, r Resolver, m *Metrics, log *slog.Logger) *Webhook {
	if r.Log == nil {
		r.Log = log
	}
	w := &Webhook{resolver: r, metrics: m, log: log}
	w.config.Store(&c)
	return w
}

// SetConfig replaces the configuration for the next reviews.
func (w *Webhook) SetConfig(c Config) { w.config.Store(&c) }

// WatchConfig reloads the configuration file at path whenever it changes,
// until ctx ends; a bad version is logged and counted, and the last good
// one stays.
func (w *Webhook) WatchConfig(ctx context.Context, path string) error {
	return filewatch.Run(ctx, path, filewatch.Options{Logger: w.log, What: "the injector config"}, func() {
		c, err := LoadConfig(path)
		if err != nil {
			w.log.Error("injector config rejected: the last good one stays", "err", err)
			w.metrics.reloads.Rejected()
			return
		}
		if c.Version() != w.config.Load().Version() {
			w.log.Info("injector config loaded", "path", path, "version", c.Version())
		}
		w.SetConfig(c)
		w.metrics.reloads.OK(time.Now())
	})
}

// Handler serves /inject/<cluster> and /healthz.
func (w *Webhook) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /inject/{cluster}", w.serveReview)
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { io.WriteString(rw, "ok\n") })
	return mux
}

func (w *Webhook) serveReview(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := ResultError
	defer func() {
		w.metrics.requests.WithLabelValues(result).Inc()
		w.metrics.duration.Observe(time.Since(start).Seconds())
	}()
	ctx, cancel := context.WithTimeout(r.Context(), ReviewTimeout)
	defer cancel()
	cluster := r.PathValue("cluster")
	if msgs := validation.IsDNS1123Label(cluster); len(msgs) > 0 {
		http.Error(rw, fmt.Sprintf("cluster %q in the path: not a DNS label", cluster), http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxReviewBytes))
	if err != nil {
		http.Error(rw, "read review: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(rw, fmt.Sprintf("not an admission.k8s.io/v1 AdmissionReview with a request (%v)", err), http.StatusBadRequest)
		return
	}
	req := review.Request
	resp, res := w.review(ctx, cluster, req)
	result = res
	resp.UID = req.UID
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(out)
}

// review answers one request; the result is for the metrics.
func (w *Webhook) review(ctx context.Context, cluster string, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	deny := func(code int32, err error) *admissionv1.AdmissionResponse {
		return &admissionv1.AdmissionResponse{Result: &metav1.Status{
			Status: metav1.StatusFailure, Code: code, Message: "horizon injector: " + err.Error(),
		}}
	}
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.Operation != admissionv1.Create {
		return allow, ResultSkipped
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		w.log.Error("injector: undecodable pod", "cluster", cluster, "namespace", req.Namespace, "pod", req.Name, "err", err)
		return deny(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err)), ResultError
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace // not set yet at admission
	}
	log := w.log.With("cluster", cluster, "namespace", pod.Namespace, "pod", podName(&pod))
	target, err := w.resolver.Target(ctx, cluster, &pod)
	if err != nil {
		log.Error("injector: no target for the pod", "err", err)
		return deny(http.StatusInternalServerError, err), ResultRefused
	}
	injected, err := Pod(*w.config.Load(), target, &pod)
	var skip Skip
	switch {
	case errors.As(err, &skip):
		log.Debug("injector: pod skipped", "reason", skip.Error())
		return allow, ResultSkipped
	case err != nil:
		log.Warn("injector: pod refused", "err", err)
		return deny(http.StatusBadRequest, err), ResultRefused
	}
	patch, err := Patch(&pod, injected)
	if err != nil {
		log.Error("injector: patch", "err", err)
		return deny(http.StatusInternalServerError, err), ResultError
	}
	pt := admissionv1.PatchTypeJSONPatch
	log.Info("injector: pod injected")
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}, ResultInjected
}
