package policyfile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/horizonmesh/horizon/internal/filewatch"
)

// Watcher serves the policy of a file and checks it again when the file or
// the topology changes. A file that does not pass, or is larger than
// MaxFileSize (of which it reads no more than MaxFileSize+1 bytes), is
// logged, counted as a rejected reload and shown by Status, and the last
// good policy keeps serving.
//
// A topology change can make the serving policy fail its check (a cluster
// it pins was removed from the ClusterSet). The policy keeps serving then:
// dropping it would change traffic for every service, not just the one that
// names the missing cluster, and the file has not changed. Status reports
// TopologyMismatch with the errors, the horizon_policy_topology_mismatch
// gauge is 1, and rendering must treat names it cannot find as absent. The
// next edit of the file must pass against the new topology.
type Watcher struct {
	Path   string
	Logger *slog.Logger // nil logs nothing
	// OnUpdate is called from Run's goroutine with each new valid policy:
	// the first, then one per change of its version (an edit of comments
	// only, or a topology change that still passes, calls nothing). It must
	// not block for long.
	OnUpdate func(*File)
	Metrics  *Metrics // nil records nothing
	// PollInterval is how often Run also looks at the file's size, time and
	// identity, for changes file system events miss. Zero means 2s.
	PollInterval time.Duration

	pollOnly bool // tests: watch without fsnotify

	mu       sync.Mutex
	topo     *Topology
	topoSeen chan struct{} // one pending notification of a new topology
	status   Status
	current  *File
}

// Status is what a /debug page shows of the policy.
type Status struct {
	Path string `json:"path"`
	// Version of the serving policy; "" while none has passed.
	Version string `json:"version,omitempty"`
	// Hash is the SHA-256 of the file content the serving policy was read from.
	Hash string `json:"hash,omitempty"`
	// LoadedAt is when the serving version was first loaded.
	LoadedAt time.Time `json:"loadedAt,omitzero"`
	// CheckedAt is when the file was last checked, CheckOK whether that passed.
	CheckedAt time.Time `json:"checkedAt,omitzero"`
	CheckOK   bool      `json:"checkOK"`
	// LastError is why the last check failed (file:line:col: path: message,
	// one per line); "" when it passed.
	LastError string `json:"lastError,omitempty"`
	// TopologyMismatch: the serving policy itself fails against the current
	// topology (LastError says why); it keeps serving.
	TopologyMismatch bool `json:"topologyMismatch,omitempty"`
	// Warnings of the serving policy.
	Warnings []string `json:"warnings,omitempty"`
	Rules    int      `json:"rules"`
	// RoutedHosts is how many hosts have route rules.
	RoutedHosts int `json:"routedHosts,omitempty"`
}

// SetTopology gives the watcher the topology to check the policy against:
// cmd calls it with TopologyOf each new ClusterSet. Run waits for the first
// one; a later one that differs makes Run check the file again. It never
// blocks and may be called from any goroutine.
func (w *Watcher) SetTopology(t Topology) {
	t = t.normalized()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.topo != nil && w.topo.Equal(t) {
		return
	}
	w.topo = &t
	w.notifier()
	select {
	case w.topoSeen <- struct{}{}:
	default: // one is pending already; Run reads the latest topology
	}
}

// notifier returns the topology channel; w.mu must be held.
func (w *Watcher) notifier() chan struct{} {
	if w.topoSeen == nil {
		w.topoSeen = make(chan struct{}, 1)
	}
	return w.topoSeen
}

func (w *Watcher) topology() Topology {
	w.mu.Lock()
	defer w.mu.Unlock()
	return *w.topo
}

// Status returns the watcher's state for a debug page.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	s.Path = w.Path
	return s
}

// Policy returns the serving policy, nil before one passed.
func (w *Watcher) File() *File {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current
}

// LastError returns why the last check failed, nil if it passed.
func (w *Watcher) LastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status.LastError == "" {
		return nil
	}
	return errors.New(w.status.LastError)
}

// Run waits for the first topology, loads the file and calls OnUpdate with
// its policy, then watches the file and the topology until ctx is done. It
// returns the first load's error if that fails, and nil when ctx is done.
// Run must not be called twice at once.
//
// It watches the file's directory rather than the file, so that a file
// replaced by a rename or a ConfigMap's symlink swap is seen, and polls as a
// fallback, as discovery/file does.
func (w *Watcher) Run(ctx context.Context) error {
	s := &watch{w: w, log: w.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("path", w.Path)
	w.mu.Lock()
	topoSeen := w.notifier()
	w.mu.Unlock()

	return filewatch.Run(ctx, w.Path, filewatch.Options{
		Logger: s.log, What: "the policy file", PollInterval: w.PollInterval, PollOnly: w.pollOnly,
		Ready: func() error {
			select {
			case <-ctx.Done():
				return nil // the loop ends at once
			case <-topoSeen:
			}
			return s.check(false)
		},
		Extra: topoSeen, OnExtra: func() { s.check(true) },
	}, func() { s.check(false) })
}

// watch is the state of one Run, owned by its goroutine.
type watch struct {
	w       *Watcher
	log     *slog.Logger
	seen    string // what the last look found: a content hash or a read error
	good    string // content hash of the serving policy
	lastErr error
}

// check reads the file and, if it changed since the last look or force is
// set (a new topology), checks it. It returns the error that rejected it.
func (s *watch) check(force bool) error {
	data, err := readFile(s.w.Path) // a file too large is an error here
	seen := "read error: "
	var sum [sha256.Size]byte
	if err != nil {
		seen += err.Error()
	} else {
		sum = sha256.Sum256(data)
		seen = string(sum[:])
	}
	if seen == s.seen && !force {
		return s.lastErr
	}
	s.seen = seen
	var pol *File
	if err == nil {
		pol, err = Parse(s.w.Path, data, s.w.topology())
	}
	now := time.Now()
	s.lastErr = err
	if err != nil {
		s.w.Metrics.reloads().Rejected()
		s.w.Metrics.routeProblems(RouteErrors(err))
		mismatch := seen == s.good // the serving file, failing a new topology
		s.w.Metrics.mismatch(mismatch)
		s.w.mu.Lock()
		s.w.status.CheckedAt, s.w.status.CheckOK = now, false
		s.w.status.LastError, s.w.status.TopologyMismatch = err.Error(), mismatch
		initial := s.w.current == nil
		s.w.mu.Unlock()
		switch {
		case initial: // the error goes to Run's caller
		case mismatch:
			s.log.Warn("policy no longer matches the ClusterSet; keeping it", "error", err)
		case errors.Is(err, os.ErrNotExist):
			s.log.Warn("policy file removed; keeping the last good policy", "error", err)
		default:
			s.log.Warn("policy file rejected; keeping the last good policy", "error", err)
		}
		return err
	}
	s.good = seen
	s.w.Metrics.reloads().OK(now)
	s.w.Metrics.mismatch(false)
	s.w.Metrics.routeProblems(0)
	var warnings []string
	for _, e := range pol.Warnings {
		warnings = append(warnings, e.Error())
	}
	s.w.mu.Lock()
	changed := s.w.current == nil || s.w.current.Version != pol.Version
	s.w.current = pol
	st := &s.w.status
	st.CheckedAt, st.CheckOK, st.LastError, st.TopologyMismatch = now, true, "", false
	st.Version, st.Hash, st.Warnings, st.Rules = pol.Version, hex.EncodeToString(sum[:]), warnings, len(pol.Rules)
	st.RoutedHosts = len(pol.Routes)
	if changed {
		st.LoadedAt = now
	}
	s.w.mu.Unlock()
	for _, w := range pol.Warnings {
		s.log.Warn("policy warning", "warning", w.Error())
	}
	if !changed {
		s.log.Info("policy checked, no change", "version", pol.Version)
		return nil
	}
	s.log.Info("policy loaded", "version", pol.Version, "rules", len(pol.Rules), "routedHosts", len(pol.Routes))
	if s.w.OnUpdate != nil {
		s.w.OnUpdate(pol)
	}
	return nil
}
