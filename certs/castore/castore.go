// Package castore is the CA directory Horizon signs with when it is the CA
// (`horizon serve --ca-dir`): the root or intermediate that `horizon ca`
// wrote, and an intermediate per member cluster in a subdirectory named
// after it, reloaded when their files change. In the pipeline it sits on
// the identity side, beside the xDS path: it hands certsvc (the certificate
// API on the mutual-TLS port) the CA that signs a member cluster's SVIDs,
// and Horizon's own SVID is issued from it too.
package castore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
)

// Store is the CA directory of --ca-dir, reloaded when its files change:
// the CA at the top signs for every cluster, unless a subdirectory named
// after a member cluster holds that cluster's own intermediate. A reload
// that fails keeps the last good CAs and says why in the log.
type Store struct {
	dir     string
	td      spiffeid.TrustDomain
	metrics *certs.Metrics
	log     *slog.Logger
	now     func() time.Time // the CAs' clock

	mu        sync.Mutex
	checked   time.Time // when the files were last looked at
	stamp     string    // their names, sizes and times then
	top       *certs.CA
	byCluster map[string]*certs.CA
}

// caRecheck is how often at most the directory is looked at again.
const caRecheck = time.Second

// New loads the CA directory dir for trust domain td. m counts what its CAs
// issue, log hears of reloads, and now is the CAs' clock.
func New(dir string, td spiffeid.TrustDomain, m *certs.Metrics, log *slog.Logger, now func() time.Time) (*Store, error) {
	s := &Store{dir: dir, td: td, metrics: m, log: log, now: now}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Signer returns the CA for a member cluster ("" or an unknown one: the
// top CA).
func (s *Store) Signer(cluster string) (*certs.CA, error) {
	s.maybeReload()
	s.mu.Lock()
	defer s.mu.Unlock()
	if ca, ok := s.byCluster[cluster]; ok {
		return ca, nil
	}
	return s.top, nil
}

// Current returns the top CA (Horizon's own SVID comes from it).
func (s *Store) Current() (*certs.CA, error) { return s.Signer("") }

func (s *Store) maybeReload() {
	s.mu.Lock()
	due := time.Since(s.checked) >= caRecheck
	s.mu.Unlock()
	if !due {
		return
	}
	if err := s.Reload(); err != nil {
		s.log.Error("CA directory: keeping the CAs loaded before", "dir", s.dir, "error", err)
	}
}

// Reload loads the directory if its stamp changed.
func (s *Store) Reload() error {
	stamp, subdirs, err := dirStamp(s.dir)
	s.mu.Lock()
	s.checked = time.Now()
	unchanged := err == nil && stamp == s.stamp && s.top != nil // a first load always reads the CA
	s.mu.Unlock()
	if err != nil || unchanged {
		return err
	}
	opts := []certs.Option{certs.WithTrustDomain(s.td), certs.WithMetrics(s.metrics), certs.WithClock(s.now)}
	top, err := certs.LoadDir(s.dir, opts...)
	if err != nil {
		return err
	}
	byCluster := map[string]*certs.CA{}
	for _, sub := range subdirs {
		ca, err := certs.LoadDir(filepath.Join(s.dir, sub), append(opts, certs.WithCluster(sub))...)
		if err != nil {
			return err
		}
		if !sameRoots(ca, top) {
			return fmt.Errorf("%s: its trust bundle (%s) differs from %s's", filepath.Join(s.dir, sub, certs.RootCertFile), sub, s.dir)
		}
		byCluster[sub] = ca
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.top != nil {
		s.log.Info("CA directory reloaded", "dir", s.dir, "ca", top.Certificate().Subject.String(), "roots", len(top.Bundle().X509Authorities()), "clusters", slices.Sorted(maps.Keys(byCluster)))
	}
	s.stamp, s.top, s.byCluster = stamp, top, byCluster
	return nil
}

// sameRoots says whether two CAs have the same roots, in any order.
func sameRoots(a, b *certs.CA) bool {
	ra, rb := a.Bundle().X509Authorities(), b.Bundle().X509Authorities()
	if len(ra) != len(rb) {
		return false
	}
	for _, x := range ra {
		if !slices.ContainsFunc(rb, x.Equal) {
			return false
		}
	}
	return true
}

// dirStamp describes the PEM files of dir and of its subdirectories (which
// it returns, those holding a CA key), so that a change to any is noticed.
func dirStamp(dir string) (string, []string, error) {
	var b strings.Builder
	var subdirs []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, err
	}
	stampFile := func(path string) error {
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %d\n", path, st.Size(), st.ModTime().UnixNano())
		return nil
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), "."):
		case e.IsDir():
			if _, err := os.Stat(filepath.Join(path, certs.KeyFile)); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			subdirs = append(subdirs, e.Name())
			for _, name := range []string{certs.CertFile, certs.KeyFile, certs.RootCertFile} {
				if err := stampFile(filepath.Join(path, name)); err != nil {
					return "", nil, err
				}
			}
		default:
			if err := stampFile(path); err != nil {
				return "", nil, err
			}
		}
	}
	return b.String(), subdirs, nil
}
