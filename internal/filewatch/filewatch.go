// Package filewatch follows one configuration file for changes, the way
// Horizon's ClusterSet file and policy file are followed: it watches the
// file's directory (so that a file replaced by a rename, an editor's atomic
// save or a Kubernetes ConfigMap's symlink swap is seen), gathers a burst of
// events into one call, and polls the file's identity, size and time as a
// fallback. What a change means is the caller's: it re-reads the file and
// compares contents.
package filewatch

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults of Options.
const (
	// DefaultDebounce gathers the events of one save (truncate, write,
	// chmod; or create and rename) into one call.
	DefaultDebounce     = 100 * time.Millisecond
	DefaultPollInterval = 2 * time.Second
)

// Options configure Run.
type Options struct {
	Logger       *slog.Logger
	What         string        // the file, for log messages ("the policy file")
	PollInterval time.Duration // 0: DefaultPollInterval
	PollOnly     bool          // tests: no fsnotify
	// Ready, if set, is called once the directory is watched, before the
	// loop: the first load goes there, so that no change slips in between.
	// Its error ends Run.
	Ready func() error
	// Extra and OnExtra add one more event source to the loop (e.g. a new
	// topology to check the file against).
	Extra   <-chan struct{}
	OnExtra func()
}

// Run calls changed whenever the file at path may have changed, until ctx
// ends. changed is never called concurrently, nor with Ready or OnExtra.
func Run(ctx context.Context, path string, o Options, changed func()) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	what := o.What
	if what == "" {
		what = "the file"
	}
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if !o.PollOnly {
		fw, err := fsnotify.NewWatcher()
		if err == nil {
			if err = fw.Add(filepath.Dir(path)); err != nil {
				fw.Close()
			}
		}
		if err != nil {
			log.Warn("cannot watch the directory of "+what+"; polling it only", "error", err)
		} else {
			defer fw.Close()
			events, watchErrs = fw.Events, fw.Errors
		}
	}
	// last is the file as it was just before the caller last read it: a
	// change after that read shows as a difference at the next poll.
	last, _ := os.Stat(path)
	if o.Ready != nil {
		if err := o.Ready(); err != nil {
			return err
		}
	}
	call := func(f func()) {
		last, _ = os.Stat(path)
		f()
	}

	interval := o.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	poll := time.NewTicker(interval)
	defer poll.Stop()
	debounce := time.NewTimer(DefaultDebounce)
	debounce.Stop()
	defer debounce.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// Any event in the directory may be the file's (a rename over it,
			// a symlink swap of the directory holding it); the caller compares
			// contents, so an unrelated event costs one read. The first event
			// of a burst starts the timer, so a busy directory cannot postpone
			// the call forever.
			if !pending {
				pending = true
				debounce.Reset(DefaultDebounce)
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			log.Warn("watching the directory of "+what, "error", err)
		case <-debounce.C:
			pending = false
			call(changed)
		case <-poll.C:
			if fi, err := os.Stat(path); statChanged(fi, err, last) {
				call(changed)
			}
		case <-o.Extra:
			if o.OnExtra != nil {
				call(o.OnExtra)
			}
		}
	}
}

// statChanged reports whether the file (fi, err) looks different from last:
// it appeared, went, or changed identity, size or time.
func statChanged(fi os.FileInfo, err error, last os.FileInfo) bool {
	if err != nil || last == nil {
		return (err == nil) != (last != nil)
	}
	return !os.SameFile(fi, last) || fi.Size() != last.Size() || !fi.ModTime().Equal(last.ModTime())
}
