package mcs

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// The annotations in which Horizon records which of an import's labels and
// annotations it copied from the winning export (comma-separated keys), so
// that it removes exactly those when the export stops exporting them and
// leaves everyone else's alone.
const (
	AnnotationExportedLabels      = horizonAnnotationPrefix + "exported-labels"
	AnnotationExportedAnnotations = horizonAnnotationPrefix + "exported-annotations"

	horizonAnnotationPrefix = "multicluster.horizon.io/"
)

// importMetadata returns the labels and annotations an import should carry:
// what it has, less the exported keys Horizon wrote before and no longer
// wants, plus the wanted ones, Horizon's label and the bookkeeping.
func importMetadata(cur *mcsv1beta1.ServiceImport, want Import) (labels, annotations map[string]string) {
	labels, annotations = map[string]string{}, map[string]string{}
	if cur != nil {
		maps.Copy(labels, cur.Labels)
		maps.Copy(annotations, cur.Annotations)
	}
	update := func(m map[string]string, record string, wanted map[string]string) {
		for _, k := range strings.Split(annotations[record], ",") {
			if _, ok := wanted[k]; !ok && k != "" {
				delete(m, k)
			}
		}
		maps.Copy(m, wanted)
		if len(wanted) == 0 {
			delete(annotations, record)
		} else {
			annotations[record] = strings.Join(slices.Sorted(maps.Keys(wanted)), ",")
		}
	}
	update(labels, AnnotationExportedLabels, want.Labels)
	update(annotations, AnnotationExportedAnnotations, want.Annotations)
	labels[LabelManagedBy] = ManagedByHorizon
	if len(annotations) == 0 {
		annotations = nil
	}
	return labels, annotations
}

// memoTTL bounds how long a write is trusted over a cache that has not shown
// it yet.
const memoTTL = 30 * time.Second

// memo remembers what the controller wrote to one member while the member's
// caches may still hold the versions it replaced, so that the next round
// neither writes the same change again nor fails on a stale resourceVersion.
type memo struct {
	exports map[string]written[*mcsv1beta1.ServiceExport]
	imports map[string]written[*mcsv1beta1.ServiceImport]
}

type written[T metav1.Object] struct {
	// stale are the versions the cache may still show that this
	// controller's writes replaced: the one it wrote over ("" if none) and
	// any it wrote itself on the way (a create, then its status).
	stale []string
	obj   T    // as the server returned it (when gone: as last seen)
	gone  bool // deleted
	at    time.Time
}

// remember records a write made over the cache's version cachedRV.
func remember[T metav1.Object](m map[string]written[T], key, cachedRV string, obj T, gone bool) {
	stale := []string{cachedRV}
	if w, ok := m[key]; ok && slices.Contains(w.stale, cachedRV) {
		stale = append(slices.Clone(w.stale), w.obj.GetResourceVersion())
	}
	m[key] = written[T]{stale: stale, obj: obj, gone: gone, at: time.Now()}
}

func newMemo() *memo {
	return &memo{exports: map[string]written[*mcsv1beta1.ServiceExport]{}, imports: map[string]written[*mcsv1beta1.ServiceImport]{}}
}

// cached is one object as the member's cache holds it.
type cached[T metav1.Object] struct {
	obj T
	ok  bool
}

func (c cached[T]) rv() string {
	if !c.ok {
		return ""
	}
	return c.obj.GetResourceVersion()
}

// latest returns the freshest version of an object: the cache's, unless the
// cache still holds the version this controller replaced.
func latest[T metav1.Object](m map[string]written[T], key string, c cached[T]) (T, bool) {
	w, ok := m[key]
	if !ok {
		return c.obj, c.ok
	}
	if slices.Contains(w.stale, c.rv()) && time.Since(w.at) < memoTTL {
		var zero T
		if w.gone {
			return zero, false
		}
		return w.obj, true
	}
	delete(m, key) // the cache has caught up (or the memory is too old)
	return c.obj, c.ok
}

// work is one member's part of a plan.
type work struct {
	exports []ExportStatus
	imports []Import
	deletes []Ref
}

func (w *work) empty() bool { return len(w.exports)+len(w.imports)+len(w.deletes) == 0 }

// apply writes the plan, each member in its own goroutine so that a slow or
// unreachable member does not hold up the others. It reports whether every
// write succeeded.
func (c *Controller) apply(ctx context.Context, plan Plan, members map[string]Member) bool {
	works := map[string]*work{}
	get := func(id string) *work {
		if works[id] == nil {
			works[id] = &work{}
		}
		return works[id]
	}
	for _, e := range plan.Exports {
		get(e.Cluster).exports = append(get(e.Cluster).exports, e)
	}
	for _, im := range plan.Imports {
		get(im.Cluster).imports = append(get(im.Cluster).imports, im)
	}
	for _, d := range plan.Deletes {
		get(d.Cluster).deletes = append(get(d.Cluster).deletes, d)
	}
	for id := range c.written {
		if _, ok := members[id]; !ok {
			delete(c.written, id)
		}
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok = true
	)
	for id, m := range members {
		if c.written[id] == nil {
			c.written[id] = newMemo()
		}
		w, mm := works[id], c.written[id]
		if w == nil || w.empty() {
			continue
		}
		wg.Go(func() {
			if !c.applyMember(ctx, m, mm, w) {
				mu.Lock()
				ok = false
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ok
}

// errUnreachable stops a member's writes for the rest of a round.
var errUnreachable = errors.New("member unreachable")

func (c *Controller) applyMember(ctx context.Context, m Member, mm *memo, w *work) bool {
	exports := map[string]cached[*mcsv1beta1.ServiceExport]{}
	for _, ex := range m.ServiceExports() {
		exports[ex.Namespace+"/"+ex.Name] = cached[*mcsv1beta1.ServiceExport]{ex, true}
	}
	imports := map[string]cached[*mcsv1beta1.ServiceImport]{}
	for _, im := range m.ServiceImports() {
		imports[im.Namespace+"/"+im.Name] = cached[*mcsv1beta1.ServiceImport]{im, true}
	}
	ok := true
	for _, e := range w.exports {
		err := c.writeExportStatus(ctx, m, mm, e, exports[e.Namespace+"/"+e.Name])
		if err != nil {
			ok = false
			if errors.Is(err, errUnreachable) || ctx.Err() != nil {
				return false // unreachable, or stopping: no more writes this round
			}
		}
	}
	for _, im := range w.imports {
		err := c.writeImport(ctx, m, mm, im, imports[im.Namespace+"/"+im.Name])
		if err != nil {
			ok = false
			if errors.Is(err, errUnreachable) || ctx.Err() != nil {
				return false // unreachable, or stopping: no more writes this round
			}
		}
	}
	for _, d := range w.deletes {
		err := c.deleteImport(ctx, m, mm, d, imports[d.Namespace+"/"+d.Name])
		if err != nil {
			ok = false
			if errors.Is(err, errUnreachable) || ctx.Err() != nil {
				return false // unreachable, or stopping: no more writes this round
			}
		}
	}
	return ok
}

func (c *Controller) writeExportStatus(ctx context.Context, m Member, mm *memo, want ExportStatus, cache cached[*mcsv1beta1.ServiceExport]) error {
	key := want.Namespace + "/" + want.Name
	cur, ok := latest(mm.exports, key, cache)
	if !ok {
		return nil // deleted since the plan was made
	}
	next := cur.DeepCopy()
	changed := false
	for _, cond := range want.Conditions {
		cond.ObservedGeneration = cur.Generation
		if meta.SetStatusCondition(&next.Status.Conditions, cond) {
			changed = true
		}
	}
	if !changed {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	defer cancel()
	out, err := m.MCS().MulticlusterV1beta1().ServiceExports(want.Namespace).UpdateStatus(wctx, next, metav1.UpdateOptions{})
	if err != nil {
		return c.failed(ctx, kindExportStatus, want.Ref, err)
	}
	remember(mm.exports, key, cache.rv(), out, false)
	c.cfg.Metrics.write(kindExportStatus, resultUpdated)
	c.log.Debug("ServiceExport status updated", "cluster", want.Cluster, "namespace", want.Namespace, "name", want.Name)
	return nil
}

func (c *Controller) writeImport(ctx context.Context, m Member, mm *memo, want Import, cache cached[*mcsv1beta1.ServiceImport]) error {
	key := want.Namespace + "/" + want.Name
	client := m.MCS().MulticlusterV1beta1().ServiceImports(want.Namespace)
	cur, ok := latest(mm.imports, key, cache)
	wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	defer cancel()
	switch {
	case !ok:
		labels, annotations := importMetadata(nil, want)
		obj := &mcsv1beta1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Namespace: want.Namespace, Name: want.Name, Labels: labels, Annotations: annotations},
			Spec:       want.Spec,
		}
		out, err := client.Create(wctx, obj, metav1.CreateOptions{})
		if err != nil {
			return c.failed(ctx, kindImport, want.Ref, err)
		}
		remember(mm.imports, key, cache.rv(), out, false)
		c.cfg.Metrics.write(kindImport, resultCreated)
		c.log.Info("ServiceImport created", "cluster", want.Cluster, "namespace", want.Namespace, "name", want.Name, "ips", want.Spec.IPs)
		cur = out
	case !managed(cur):
		return nil // someone else's since the plan was made
	case !apiequality.Semantic.DeepEqual(cur.Spec, want.Spec) || !metadataEqual(cur, want):
		next := cur.DeepCopy()
		next.Spec = want.Spec
		next.Labels, next.Annotations = importMetadata(cur, want)
		out, err := client.Update(wctx, next, metav1.UpdateOptions{})
		if err != nil {
			return c.failed(ctx, kindImport, want.Ref, err)
		}
		remember(mm.imports, key, cache.rv(), out, false)
		c.cfg.Metrics.write(kindImport, resultUpdated)
		c.log.Info("ServiceImport updated", "cluster", want.Cluster, "namespace", want.Namespace, "name", want.Name, "ips", want.Spec.IPs)
		cur = out
	}
	if clustersEqual(cur.Status.Clusters, want.Clusters) {
		return nil
	}
	next := cur.DeepCopy()
	next.Status.Clusters = nil
	for _, id := range want.Clusters {
		next.Status.Clusters = append(next.Status.Clusters, mcsv1beta1.ClusterStatus{Cluster: id})
	}
	out, err := client.UpdateStatus(wctx, next, metav1.UpdateOptions{})
	if err != nil {
		return c.failed(ctx, kindImportStatus, want.Ref, err)
	}
	remember(mm.imports, key, cache.rv(), out, false)
	c.cfg.Metrics.write(kindImportStatus, resultUpdated)
	c.log.Debug("ServiceImport status updated", "cluster", want.Cluster, "namespace", want.Namespace, "name", want.Name, "clusters", want.Clusters)
	return nil
}

// metadataEqual reports whether an import already carries the labels and
// annotations it should.
func metadataEqual(cur *mcsv1beta1.ServiceImport, want Import) bool {
	labels, annotations := importMetadata(cur, want)
	return maps.Equal(cur.Labels, labels) && maps.Equal(cur.Annotations, annotations)
}

func clustersEqual(have []mcsv1beta1.ClusterStatus, want []string) bool {
	return slices.EqualFunc(have, want, func(s mcsv1beta1.ClusterStatus, id string) bool { return s.Cluster == id })
}

func (c *Controller) deleteImport(ctx context.Context, m Member, mm *memo, ref Ref, cache cached[*mcsv1beta1.ServiceImport]) error {
	key := ref.Namespace + "/" + ref.Name
	cur, ok := latest(mm.imports, key, cache)
	if !ok || !managed(cur) {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	defer cancel()
	uid := cur.UID
	err := m.MCS().MulticlusterV1beta1().ServiceImports(ref.Namespace).Delete(wctx, ref.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return c.failed(ctx, kindImport, ref, err)
	}
	remember(mm.imports, key, cache.rv(), cur, true)
	if err == nil {
		c.cfg.Metrics.write(kindImport, resultDeleted)
		c.log.Info("ServiceImport deleted", "cluster", ref.Cluster, "namespace", ref.Namespace, "name", ref.Name)
	}
	return nil
}

// failed logs and counts a failed write. A conflict (a stale cache, a
// concurrent writer) is retried on a later round; an error that is not the
// API server's answer means the member is unreachable, and its other writes
// wait for the next round.
func (c *Controller) failed(ctx context.Context, kind string, ref Ref, err error) error {
	if ctx.Err() != nil {
		return err // stopping: not the member's fault
	}
	attrs := []any{"cluster", ref.Cluster, "namespace", ref.Namespace, "name", ref.Name, "kind", kind, "error", err}
	var status apierrors.APIStatus
	switch {
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
		c.cfg.Metrics.write(kind, resultConflict)
		c.log.Info("write conflict; retrying on the next round", attrs...)
		return err
	case !errors.As(err, &status):
		c.cfg.Metrics.write(kind, resultError)
		c.log.Warn("write failed; skipping the member's other writes this round", attrs...)
		return errors.Join(errUnreachable, err)
	default:
		c.cfg.Metrics.write(kind, resultError)
		c.log.Warn("write failed", attrs...)
		return err
	}
}
