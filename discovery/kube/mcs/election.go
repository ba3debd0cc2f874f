package mcs

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/horizonmesh/horizon/internal/ratelog"
)

// Reasons a replica cannot take or keep the Lease, the reason label of
// horizon_mcs_leader_election_failures_total.
const (
	ElectionForbidden        = "forbidden"         // RBAC: no rights on Leases
	ElectionUnauthorized     = "unauthorized"      // the credentials are refused
	ElectionNamespaceMissing = "namespace_missing" // the Lease's namespace does not exist
	ElectionError            = "error"             // anything else (unreachable, timeouts)
)

// electionWarnEvery bounds the warnings of one reason: client-go retries
// every RetryPeriod (2s by default).
const electionWarnEvery = 30 * time.Second

// ElectionStatus is what a replica knows of its leader election, for
// /debug: while LastError is set, this replica cannot take (or keep) the
// Lease and so never writes.
type ElectionStatus struct {
	Enabled   bool      `json:"enabled"` // false: no election, the controller always writes
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name,omitempty"`
	Identity  string    `json:"identity,omitempty"`
	Leader    bool      `json:"leader"`
	Reason    string    `json:"reason,omitempty"` // of the last failure, while it lasts
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since,omitzero"` // first failure of the current run of failures
	Failures  int       `json:"failures"`       // since start, every reason
}

// electionWatch records the Lease lock's failures: client-go's elector only
// tells klog about them.
type electionWatch struct {
	warn    *ratelog.Logger
	metrics *Metrics

	mu     sync.Mutex
	status ElectionStatus
}

// failed records one failed Lease operation.
func (w *electionWatch) failed(op string, err error) {
	reason := electionReason(op, err)
	w.mu.Lock()
	if w.status.LastError == "" {
		w.status.Since = time.Now()
	}
	w.status.Reason, w.status.LastError = reason, err.Error()
	w.status.Failures++
	ns, name := w.status.Namespace, w.status.Name
	w.mu.Unlock()
	w.metrics.electionFailure(reason)
	w.warn.Warn(reason, "leader election cannot take the Lease: this replica does not write ServiceExport statuses or ServiceImports",
		"reason", reason, "namespace", ns, "lease", name, "op", op, "error", err)
}

// ok records a Lease operation that worked.
func (w *electionWatch) ok() {
	w.mu.Lock()
	w.status.Reason, w.status.LastError, w.status.Since = "", "", time.Time{}
	w.mu.Unlock()
}

func (w *electionWatch) snapshot() ElectionStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// electionReason classifies a failed Lease operation.
func electionReason(op string, err error) string {
	switch {
	case apierrors.IsForbidden(err):
		return ElectionForbidden
	case apierrors.IsUnauthorized(err):
		return ElectionUnauthorized
	case op == "create" && apierrors.IsNotFound(err):
		// Creating an object in a namespace that does not exist.
		return ElectionNamespaceMissing
	}
	return ElectionError
}

// watchedLock is a Lease lock that reports its failures to an
// electionWatch. A missing Lease (Get's NotFound) is no failure: the
// elector creates it. Nor is a conflict: another replica wrote first.
type watchedLock struct {
	resourcelock.Interface
	watch *electionWatch
}

func (l watchedLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := l.Interface.Get(ctx)
	switch {
	case err != nil && !apierrors.IsNotFound(err):
		l.watch.failed("get", err)
	case err == nil && rec.HolderIdentity != "" && rec.HolderIdentity != l.Identity():
		// Readable and held by another replica: healthy following (a
		// failure to update it would be reported when this one tries).
		l.watch.ok()
	}
	return rec, raw, err
}

func (l watchedLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	return l.report("create", l.Interface.Create(ctx, ler))
}

func (l watchedLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	return l.report("update", l.Interface.Update(ctx, ler))
}

func (l watchedLock) report(op string, err error) error {
	switch {
	case err == nil:
		l.watch.ok()
	case !apierrors.IsConflict(err):
		l.watch.failed(op, err)
	}
	return err
}
