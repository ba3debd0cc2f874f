package mcs

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/discovery"
)

// SliceMember is a Member that can hold MCS EndpointSlices: a client to
// write them with and its cache of them. *kube.Member satisfies it; members
// that do not are given no slices.
type SliceMember interface {
	Member
	Kube() kubernetes.Interface
	EndpointSlices() []*discoveryv1.EndpointSlice
}

const kindImportAnnotations = "ServiceImport/annotations"

// sliceRun is the controller's memory for its EndpointSlice writes. Only the
// reconcile loop uses it, except changed, which Notify sets.
type sliceRun struct {
	// written remembers, per member, the slices this controller wrote while
	// the member's cache catches up; annotated the left-out annotations.
	written   map[string]map[string]written[*discoveryv1.EndpointSlice]
	annotated map[string]map[string]annotation
	// changed is when the first change not yet written to every member was
	// announced (Unix nanoseconds, 0 when none).
	changed atomic.Int64
}

type annotation struct {
	count, reason string
	at            time.Time
}

// markChanged records when a change was announced, keeping the oldest.
func (r *sliceRun) markChanged() { r.changed.CompareAndSwap(0, time.Now().UnixNano()) }

// sliceState reads a member's namespaces and EndpointSlices, overlaid with
// what this controller wrote that its cache does not show yet.
func sliceState(m SliceMember, mem map[string]written[*discoveryv1.EndpointSlice]) SliceMemberState {
	s := SliceMemberState{ID: m.ID(), Namespaces: slices.Sorted(slices.Values(m.Namespaces()))}
	seen := map[string]bool{}
	add := func(es *discoveryv1.EndpointSlice) {
		st := SliceState{Namespace: es.Namespace, Name: es.Name, Managed: managedSlice(es)}
		if st.Managed {
			st.Service, st.Source = es.Labels[LabelServiceName], es.Labels[LabelSourceCluster]
			st.Family = es.AddressType
			st.Ports = portSignature(es.Ports)
			for _, e := range es.Endpoints {
				if len(e.Addresses) > 0 {
					st.Addresses = append(st.Addresses, e.Addresses[0])
				}
			}
		}
		s.Slices = append(s.Slices, st)
	}
	for _, es := range m.EndpointSlices() {
		key := es.Namespace + "/" + es.Name
		seen[key] = true
		if cur, ok := latest(mem, key, cached[*discoveryv1.EndpointSlice]{es, true}); ok {
			add(cur)
		}
	}
	// Created by this controller, not in the cache yet.
	for _, key := range slices.Sorted(maps.Keys(mem)) {
		if w := mem[key]; !seen[key] && !w.gone && time.Since(w.at) < memoTTL {
			add(w.obj)
		}
	}
	return s
}

func managedSlice(es *discoveryv1.EndpointSlice) bool {
	return es.Labels[discoveryv1.LabelManagedBy] == ControllerName
}

// reconcileSlices plans and writes the members' MCS EndpointSlices and the
// left-out annotations of their ServiceImports, after the round's imports.
// It reports whether every write succeeded.
func (c *Controller) reconcileSlices(ctx context.Context, cs *discovery.ClusterSet, foreign []Ref, members []Member) bool {
	if c.cfg.Slices.Disabled {
		return true
	}
	r := &c.slices
	if r.written == nil {
		r.written, r.annotated = map[string]map[string]written[*discoveryv1.EndpointSlice]{}, map[string]map[string]annotation{}
	}
	changed := r.changed.Load()
	byID := map[string]SliceMember{}
	var states []SliceMemberState
	for _, m := range members {
		sm, ok := m.(SliceMember)
		if !ok {
			continue
		}
		id := sm.ID()
		byID[id] = sm
		if r.written[id] == nil {
			r.written[id], r.annotated[id] = map[string]written[*discoveryv1.EndpointSlice]{}, map[string]annotation{}
		}
		states = append(states, sliceState(sm, r.written[id]))
	}
	for id := range r.written {
		if byID[id] == nil {
			delete(r.written, id)
			delete(r.annotated, id)
		}
	}
	plan := DesiredSlices(cs, states, foreign, c.cfg.Slices.MaxEndpoints)
	c.cfg.Metrics.setLeftOut(plan.LeftOut)

	type work struct {
		writes  []Slice
		deletes []Ref
		leftOut []LeftOut
	}
	works := map[string]*work{}
	get := func(id string) *work {
		if works[id] == nil {
			works[id] = &work{}
		}
		return works[id]
	}
	for _, w := range plan.Writes {
		get(w.Cluster).writes = append(get(w.Cluster).writes, w)
	}
	for _, d := range plan.Deletes {
		get(d.Cluster).deletes = append(get(d.Cluster).deletes, d)
	}
	for _, l := range plan.LeftOut {
		get(l.Cluster).leftOut = append(get(l.Cluster).leftOut, l)
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		ok        = true
		lastWrite time.Time
	)
	for id, w := range works {
		m := byID[id]
		mem, ann := r.written[id], r.annotated[id]
		wg.Go(func() {
			wrote, good := c.applySlices(ctx, m, mem, ann, w.writes, w.deletes, w.leftOut)
			mu.Lock()
			defer mu.Unlock()
			ok = ok && good
			if wrote.After(lastWrite) {
				lastWrite = wrote
			}
		})
	}
	wg.Wait()
	if ok && ctx.Err() == nil {
		if changed != 0 && !lastWrite.IsZero() {
			c.cfg.Metrics.sliceLag(lastWrite.Sub(time.Unix(0, changed)))
		}
		r.changed.CompareAndSwap(changed, 0)
	}
	return ok
}

// applySlices writes one member's slices and annotations. It returns when
// its last write succeeded (zero if none) and whether all did.
func (c *Controller) applySlices(ctx context.Context, m SliceMember, mem map[string]written[*discoveryv1.EndpointSlice], ann map[string]annotation, writes []Slice, deletes []Ref, leftOut []LeftOut) (time.Time, bool) {
	cache := map[string]cached[*discoveryv1.EndpointSlice]{}
	for _, es := range m.EndpointSlices() {
		cache[es.Namespace+"/"+es.Name] = cached[*discoveryv1.EndpointSlice]{es, true}
	}
	var last time.Time
	ok := true
	step := func(wrote bool, err error) bool {
		if wrote {
			last = time.Now()
		}
		if err != nil {
			ok = false
			return errors.Is(err, errUnreachable) || ctx.Err() != nil
		}
		return false
	}
	for _, w := range writes {
		if step(c.writeSlice(ctx, m, mem, w, cache[w.Namespace+"/"+w.Name])) {
			return last, false
		}
	}
	for _, d := range deletes {
		if step(c.deleteSlice(ctx, m, mem, d, cache[d.Namespace+"/"+d.Name])) {
			return last, false
		}
	}
	imports := map[string]map[string]string{}
	for _, im := range m.ServiceImports() {
		imports[im.Namespace+"/"+im.Name] = im.Annotations
	}
	for _, l := range leftOut {
		if step(c.annotateLeftOut(ctx, m, ann, l, imports)) {
			return last, false
		}
	}
	return last, ok
}

func (c *Controller) writeSlice(ctx context.Context, m SliceMember, mem map[string]written[*discoveryv1.EndpointSlice], want Slice, cache cached[*discoveryv1.EndpointSlice]) (bool, error) {
	key := want.Namespace + "/" + want.Name
	client := m.Kube().DiscoveryV1().EndpointSlices(want.Namespace)
	cur, exists := latest(mem, key, cache)
	wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	defer cancel()
	labels := want.Labels()
	if !exists {
		obj := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: want.Namespace, Name: want.Name, Labels: labels},
			AddressType: want.Family,
			Endpoints:   want.Endpoints,
			Ports:       want.Ports,
		}
		out, err := client.Create(wctx, obj, metav1.CreateOptions{})
		if err != nil {
			return false, c.sliceFailed(ctx, want.Ref, err)
		}
		remember(mem, key, cache.rv(), out, false)
		c.cfg.Metrics.sliceWrite(want.Cluster, resultCreated)
		c.log.Debug("EndpointSlice created", "cluster", want.Cluster, "namespace", want.Namespace, "name", want.Name, "endpoints", len(want.Endpoints))
		return true, nil
	}
	if !managedSlice(cur) {
		return false, nil // someone else's since the plan was made
	}
	sameLabels := true
	for k, v := range labels {
		if cur.Labels[k] != v {
			sameLabels = false
		}
	}
	if sameLabels && cur.AddressType == want.Family &&
		apiequality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) && apiequality.Semantic.DeepEqual(cur.Ports, want.Ports) {
		return false, nil
	}
	next := cur.DeepCopy()
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	maps.Copy(next.Labels, labels)
	next.Endpoints, next.Ports = want.Endpoints, want.Ports
	out, err := client.Update(wctx, next, metav1.UpdateOptions{})
	if err != nil {
		return false, c.sliceFailed(ctx, want.Ref, err)
	}
	remember(mem, key, cache.rv(), out, false)
	c.cfg.Metrics.sliceWrite(want.Cluster, resultUpdated)
	c.log.Debug("EndpointSlice updated", "cluster", want.Cluster, "namespace", want.Namespace, "name", want.Name, "endpoints", len(want.Endpoints))
	return true, nil
}

func (c *Controller) deleteSlice(ctx context.Context, m SliceMember, mem map[string]written[*discoveryv1.EndpointSlice], ref Ref, cache cached[*discoveryv1.EndpointSlice]) (bool, error) {
	key := ref.Namespace + "/" + ref.Name
	cur, ok := latest(mem, key, cache)
	if !ok || !managedSlice(cur) {
		return false, nil
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	defer cancel()
	uid := cur.UID
	err := m.Kube().DiscoveryV1().EndpointSlices(ref.Namespace).Delete(wctx, ref.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return false, c.sliceFailed(ctx, ref, err)
	}
	remember(mem, key, cache.rv(), cur, true)
	if err != nil {
		return false, nil
	}
	c.cfg.Metrics.sliceWrite(ref.Cluster, resultDeleted)
	c.log.Debug("EndpointSlice deleted", "cluster", ref.Cluster, "namespace", ref.Namespace, "name", ref.Name)
	return true, nil
}

// annotateLeftOut sets (or clears) the left-out annotations of one
// ServiceImport with a merge patch, which leaves its other annotations
// alone.
func (c *Controller) annotateLeftOut(ctx context.Context, m SliceMember, ann map[string]annotation, want LeftOut, imports map[string]map[string]string) (bool, error) {
	key := want.Namespace + "/" + want.Name
	count := ""
	if want.Count > 0 {
		count = strconv.Itoa(want.Count)
	}
	have, inCache := imports[key]
	if a, ok := ann[key]; ok && time.Since(a.at) < memoTTL && a.count == count && a.reason == want.Reason {
		return false, nil // written moments ago
	}
	if have[AnnotationEndpointsLeftOut] == count && have[AnnotationEndpointsLeftOutReason] == want.Reason {
		return false, nil
	}
	if count == "" && !inCache {
		return false, nil
	}
	value := func(s string) any {
		if s == "" {
			return nil // removes the annotation
		}
		return s
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{
		AnnotationEndpointsLeftOut:       value(count),
		AnnotationEndpointsLeftOutReason: value(want.Reason),
	}}})
	if err != nil {
		return false, err
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	defer cancel()
	if _, err := m.MCS().MulticlusterV1beta1().ServiceImports(want.Namespace).Patch(wctx, want.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return false, c.failed(ctx, kindImportAnnotations, want.Ref, err)
	}
	ann[key] = annotation{count: count, reason: want.Reason, at: time.Now()}
	c.cfg.Metrics.write(kindImportAnnotations, resultUpdated)
	c.log.Debug("ServiceImport left-out annotations written", "cluster", want.Cluster, "namespace", want.Namespace, "name", want.Name, "left_out", want.Count)
	return false, nil
}

// sliceFailed logs and counts a failed slice write for its member. A
// conflict is retried on a later round; an error that is not the API
// server's answer means the member is unreachable, and its other writes wait
// for the next round.
func (c *Controller) sliceFailed(ctx context.Context, ref Ref, err error) error {
	if ctx.Err() != nil {
		return err // stopping: not the member's fault
	}
	c.cfg.Metrics.sliceWrite(ref.Cluster, resultFailed)
	attrs := []any{"cluster", ref.Cluster, "namespace", ref.Namespace, "name", ref.Name, "kind", "EndpointSlice", "error", err}
	var status apierrors.APIStatus
	switch {
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
		c.log.Info("write conflict; retrying on the next round", attrs...)
		return err
	case !errors.As(err, &status):
		c.log.Warn("write failed; skipping the member's other writes this round", attrs...)
		return errors.Join(errUnreachable, err)
	default:
		c.log.Warn("write failed", attrs...)
		return err
	}
}
