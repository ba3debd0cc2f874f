package workload

import (
	"context"
	"strings"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// The condition the watcher writes on each WorkloadGroup (status
// subresource, with WriteStatus).
const (
	// ConditionAccepted is True when Horizon serves the object, False when
	// it leaves it out.
	ConditionAccepted = "Accepted"
	// ReasonValid is Accepted=True's reason.
	ReasonValid = "Valid"
	// ReasonInvalid is Accepted=False's reason; the message is the error.
	ReasonInvalid = "Invalid"
)

// DefaultStatusWritesPerSecond bounds the watcher's status updates when
// StatusWritesPerSecond is 0.
const DefaultStatusWritesPerSecond = 10

// statusWrite is the Accepted condition one object should carry.
type statusWrite struct {
	obj *unstructured.Unstructured // the informer's copy: not modified
	err string                     // "" when accepted
}

// condition is the Accepted condition for w's object.
func (s statusWrite) condition() metav1.Condition {
	c := metav1.Condition{Type: ConditionAccepted, Status: metav1.ConditionTrue, Reason: ReasonValid,
		Message: "served by Horizon", ObservedGeneration: s.obj.GetGeneration()}
	if s.err != "" {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonInvalid
		// The error names the object first; the condition is on it.
		c.Message = strings.TrimPrefix(s.err, "WorkloadGroup "+s.obj.GetNamespace()+"/"+s.obj.GetName()+": ")
	}
	return c
}

// conditions reads the object's status.conditions (nil when absent or not
// conditions).
func conditions(u *unstructured.Unstructured) []metav1.Condition {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var out []metav1.Condition
	for _, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		var c metav1.Condition
		if runtime.DefaultUnstructuredConverter.FromUnstructured(m, &c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// upToDate: the object already carries want (transition time aside).
func upToDate(u *unstructured.Unstructured, want metav1.Condition) bool {
	have := meta.FindStatusCondition(conditions(u), want.Type)
	return have != nil && have.Status == want.Status && have.Reason == want.Reason &&
		have.Message == want.Message && have.ObservedGeneration == want.ObservedGeneration
}

// statusWriter writes Accepted conditions through the status subresource,
// at most a rate's worth per second, in its own goroutine: serving never
// waits for it. Only the latest batch of wanted conditions counts.
type statusWriter struct {
	w      *CRDWatcher
	limit  *rate.Limiter
	next   chan []statusWrite // holds at most the latest batch
	failed map[string]string  // object -> the message whose write failure was logged
	denied bool               // a forbidden write was logged
}

func newStatusWriter(w *CRDWatcher) *statusWriter {
	n := w.StatusWritesPerSecond
	if n <= 0 {
		n = DefaultStatusWritesPerSecond
	}
	return &statusWriter{w: w, limit: rate.NewLimiter(rate.Limit(n), n), next: make(chan []statusWrite, 1), failed: map[string]string{}}
}

// offer replaces the pending batch with batch; it never blocks.
func (s *statusWriter) offer(batch []statusWrite) {
	select {
	case <-s.next:
	default:
	}
	s.next <- batch
}

// run writes batches until ctx is done.
func (s *statusWriter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case batch := <-s.next:
			live := map[string]bool{}
			for _, sw := range batch {
				live["WorkloadGroup "+sw.obj.GetNamespace()+"/"+sw.obj.GetName()] = true
				if s.write(ctx, sw) != nil && ctx.Err() != nil {
					return
				}
			}
			for object := range s.failed {
				if !live[object] {
					delete(s.failed, object) // deleted objects
				}
			}
		}
	}
}

// write updates one object's Accepted condition when it differs. A failed
// write is logged once (per object and message; a forbidden one once in
// all) and tried again on the object's next change.
func (s *statusWriter) write(ctx context.Context, sw statusWrite) error {
	want := sw.condition()
	if upToDate(sw.obj, want) {
		return nil
	}
	if err := s.limit.Wait(ctx); err != nil {
		return err
	}
	u := sw.obj.DeepCopy()
	conds := conditions(u)
	want.LastTransitionTime = metav1.NewTime(time.Now())
	meta.SetStatusCondition(&conds, want)
	raw := make([]any, 0, len(conds))
	for _, c := range conds {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
		if err != nil {
			return err
		}
		raw = append(raw, m)
	}
	if err := unstructured.SetNestedSlice(u.Object, raw, "status", "conditions"); err != nil {
		return err
	}
	object := "WorkloadGroup " + u.GetNamespace() + "/" + u.GetName()
	_, err := s.w.Client.Resource(WorkloadGroupResource).Namespace(u.GetNamespace()).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	switch {
	case err == nil:
		delete(s.failed, object)
	case apierrors.IsConflict(err) || ctx.Err() != nil:
		// The object changed meanwhile: its next version brings a new batch.
	case apierrors.IsForbidden(err):
		if !s.denied {
			s.denied = true
			s.w.Log.Warn("cannot write WorkloadGroup status (grant update on workloadgroups/status, or turn --workload-groups-status off); serving on", "object", object, "error", err)
		}
	case s.failed[object] != want.Message:
		s.failed[object] = want.Message
		s.w.Log.Warn("WorkloadGroup status not written", "object", object, "error", err)
	}
	return err
}
