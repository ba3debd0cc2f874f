package workload

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
)

// WorkloadGroupResource is the WorkloadGroup custom resource
// (charts/horizon/crds/mesh.horizon.io_workloadgroups.yaml).
var WorkloadGroupResource = schema.GroupVersionResource{Group: "mesh.horizon.io", Version: "v1alpha1", Resource: "workloadgroups"}

// MaxCRDGroups bounds the WorkloadGroup objects the watcher takes; more are
// left out (the first by namespace/name are kept) and counted.
const MaxCRDGroups = 1000

// CRDWatcher reads WorkloadGroup objects from the control plane's cluster
// (every namespace, or only Namespaces) and hands every valid one to
// OnUpdate, after each change. An object
// whose spec the file parser refuses is left out with an error naming it
// (logged once per object generation, counted as
// horizon_workload_group_rejected_total); the others keep serving. With
// WriteStatus each object's status says whether it is served, and why not.
type CRDWatcher struct {
	Client dynamic.Interface
	// Namespaces, when not empty, are the only namespaces watched (one
	// informer each, so that a Role per namespace is all the watcher needs);
	// empty watches every namespace (a cluster-wide read).
	Namespaces []string
	OnUpdate   func([]discovery.WorkloadGroup)
	Log        *slog.Logger
	// Rejected counts objects left out (NewCRDMetrics); nil counts none.
	Rejected prometheus.Counter
	// WriteStatus: write each object's Accepted condition (crd_status.go)
	// through the status subresource when it changes, at most
	// StatusWritesPerSecond (0: DefaultStatusWritesPerSecond) updates a
	// second.
	WriteStatus           bool
	StatusWritesPerSecond int

	mu     sync.Mutex
	errors map[string]string // object -> the error of its current version
}

// NewCRDMetrics makes horizon_workload_group_rejected_total and registers
// it with reg (unless nil).
func NewCRDMetrics(reg prometheus.Registerer) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "horizon_workload_group_rejected_total", Help: "WorkloadGroup objects left out because their spec is invalid (per version of an object)."})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// Errors returns the errors of the objects left out now, by object.
func (w *CRDWatcher) Errors() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.errors))
	for k, v := range w.errors {
		out[k] = v
	}
	return out
}

// Run watches until ctx is done.
func (w *CRDWatcher) Run(ctx context.Context) error {
	if w.Log == nil {
		w.Log = slog.New(slog.DiscardHandler)
	}
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	// The informers stop (and Shutdown waits for them) when Run returns.
	ctx, cancel := context.WithCancel(ctx)
	var factories []dynamicinformer.DynamicSharedInformerFactory
	defer func() {
		cancel()
		for _, f := range factories {
			f.Shutdown()
		}
	}()
	var informers []cache.SharedIndexInformer
	for _, ns := range w.namespaces() {
		factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(w.Client, 0, ns, nil)
		inf := factory.ForResource(WorkloadGroupResource).Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, n any) { poke(n) }, DeleteFunc: poke}); err != nil {
			return err
		}
		factory.Start(ctx.Done())
		factories = append(factories, factory)
		informers = append(informers, inf)
	}
	for _, inf := range informers {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return nil
		}
	}
	var status *statusWriter
	if w.WriteStatus {
		status = newStatusWriter(w)
		done := make(chan struct{})
		go func() { status.run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
	}
	poke(nil)
	seen := map[string]int64{} // object -> generation whose error was logged
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		var objs []any
		for _, inf := range informers {
			objs = append(objs, inf.GetStore().List()...)
		}
		groups, writes := w.groups(objs, seen)
		w.OnUpdate(groups)
		if status != nil {
			status.offer(writes)
		}
	}
}

// namespaces are the namespaces to watch, each once: Namespaces, or
// metav1.NamespaceAll.
func (w *CRDWatcher) namespaces() []string {
	if len(w.Namespaces) == 0 {
		return []string{metav1.NamespaceAll}
	}
	out := slices.Clone(w.Namespaces)
	slices.Sort(out)
	return slices.Compact(out)
}

// groups converts the objects, leaving out and reporting invalid ones, and
// says which condition each object should carry.
func (w *CRDWatcher) groups(objs []any, seen map[string]int64) ([]discovery.WorkloadGroup, []statusWrite) {
	var us []*unstructured.Unstructured
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			us = append(us, u)
		}
	}
	slices.SortFunc(us, func(a, b *unstructured.Unstructured) int {
		return discovery.ServiceKey{Namespace: a.GetNamespace(), Name: a.GetName()}.Compare(discovery.ServiceKey{Namespace: b.GetNamespace(), Name: b.GetName()})
	})
	errs := map[string]string{}
	var out []discovery.WorkloadGroup
	writes := make([]statusWrite, 0, len(us))
	for i, u := range us {
		object := "WorkloadGroup " + u.GetNamespace() + "/" + u.GetName()
		g, err := convert(object, u)
		if err == nil && i >= MaxCRDGroups {
			err = fmt.Errorf("%s: more than %d WorkloadGroup objects", object, MaxCRDGroups)
		}
		if err != nil {
			errs[object] = err.Error()
			writes = append(writes, statusWrite{obj: u, err: err.Error()})
			// By generation, not resourceVersion: writing the status makes
			// a new version of the same spec.
			if g, ok := seen[object]; !ok || g != u.GetGeneration() {
				seen[object] = u.GetGeneration()
				w.Log.Warn("WorkloadGroup left out", "object", object, "error", err)
				if w.Rejected != nil {
					w.Rejected.Inc()
				}
			}
			continue
		}
		delete(seen, object)
		out = append(out, g)
		writes = append(writes, statusWrite{obj: u})
	}
	w.mu.Lock()
	w.errors = errs
	w.mu.Unlock()
	return out, writes
}

// convert reads one object with the file's parser.
func convert(object string, u *unstructured.Unstructured) (discovery.WorkloadGroup, error) {
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	if spec == nil {
		spec = map[string]any{}
	}
	spec["name"], spec["namespace"] = u.GetName(), u.GetNamespace()
	data, err := yaml.Marshal(spec)
	if err != nil {
		return discovery.WorkloadGroup{}, fmt.Errorf("%s: %w", object, err)
	}
	return file.ParseWorkloadGroup(object, data)
}
