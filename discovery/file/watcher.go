package file

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/horizonmesh/horizon/internal/filewatch"

	"github.com/horizonmesh/horizon/discovery"
)

// Watcher serves the ClusterSet of a local file and reloads it when the file
// changes. An edit that does not parse, or makes the file larger than
// MaxFileSize (of which it reads no more than MaxFileSize+1 bytes), is
// logged and counted as a rejected reload, and the last good ClusterSet
// keeps serving.
type Watcher struct {
	Path   string
	Logger *slog.Logger // nil logs nothing
	// OnUpdate is called from Run's goroutine with each new valid ClusterSet:
	// the initial one, then one per change of its version (an edit that only
	// touches comments calls nothing). It must not block for long.
	OnUpdate func(*discovery.ClusterSet)
	Metrics  *Metrics // nil records nothing
	// PollInterval is how often Run also looks at the file's size, time and
	// identity, for changes that file system events miss (network file
	// systems, a watch limit reached). Zero means 2s.
	PollInterval time.Duration

	// Workloads makes it a workloads file's watcher (ParseWorkloads).
	Workloads bool

	pollOnly bool // tests: watch without fsnotify

	mu      sync.Mutex
	lastErr error
}

// Load reads and parses the file once (the package's Load). It does not
// touch the Watcher's state.
func (w *Watcher) Load() (*discovery.ClusterSet, error) { return Load(w.Path) }

// LastError returns why the last load of the file failed, nil if it succeeded.
func (w *Watcher) LastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

func (w *Watcher) setLastError(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

// Run loads the file, calls OnUpdate with its ClusterSet, then watches the
// file until ctx is done, calling OnUpdate after every change that yields a
// new valid ClusterSet. It returns the initial load's error if that fails,
// and nil when ctx is done. Run must not be called twice at once.
//
// It watches the file's directory rather than the file, so that a file
// replaced by a rename (editors, atomic writes) or a Kubernetes ConfigMap's
// symlink swap is seen, and polls as a fallback.
func (w *Watcher) Run(ctx context.Context) error {
	s := &watch{w: w, log: w.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("path", w.Path)

	return filewatch.Run(ctx, w.Path, filewatch.Options{
		Logger: s.log, What: "the ClusterSet file", PollInterval: w.PollInterval, PollOnly: w.pollOnly,
		Ready: s.check,
	}, func() { s.check() })
}

// watch is the state of one Run, owned by its goroutine.
type watch struct {
	w       *Watcher
	log     *slog.Logger
	version string // of the last good ClusterSet, "" before the first
	seen    string // what the last look found: a content hash or a read error
}

// check reads the file and, if it changed since the last look, parses it:
// OnUpdate gets a new valid ClusterSet, an invalid or missing file is logged
// and counted. It returns the error that rejected the file, if any.
func (s *watch) check() error {
	data, err := readFile(s.w.Path) // a file too large is an error here
	seen := "read error: "
	if err != nil {
		seen += err.Error()
	} else {
		sum := sha256.Sum256(data)
		seen = string(sum[:])
	}
	if seen == s.seen {
		return s.w.LastError()
	}
	s.seen = seen
	initial := s.version == ""

	var cs *discovery.ClusterSet
	switch {
	case err == nil && s.w.Workloads:
		cs, err = ParseWorkloads(s.w.Path, data)
	case err == nil:
		cs, err = Parse(s.w.Path, data)
	}
	if err != nil {
		s.w.setLastError(err)
		s.w.Metrics.reloads().Rejected()
		if !initial { // the first error goes to Run's caller
			msg := "ClusterSet file rejected; keeping the last good ClusterSet"
			if errors.Is(err, os.ErrNotExist) {
				msg = "ClusterSet file removed; keeping the last good ClusterSet"
			}
			s.log.Warn(msg, "version", s.version, "error", err)
		}
		return err
	}
	s.w.setLastError(nil)
	s.w.Metrics.reloads().OK(time.Now())
	if cs.Version() == s.version {
		s.log.Info("ClusterSet file reloaded, no change", "version", s.version)
		return nil
	}
	s.version = cs.Version()
	s.log.Info("ClusterSet file loaded", "version", s.version, "clusters", len(cs.Clusters))
	if s.w.OnUpdate != nil {
		s.w.OnUpdate(cs)
	}
	return nil
}
