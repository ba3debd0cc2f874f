package castore

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func writeCA(t *testing.T, dir string, ca *certs.CA) {
	t.Helper()
	files, err := ca.Files()
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteFiles(dir, files, true); err != nil {
		t.Fatal(err)
	}
}

func newRoot(t *testing.T) *certs.CA {
	t.Helper()
	root, err := certs.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func intermediate(t *testing.T, root *certs.CA, cluster string) *certs.CA {
	t.Helper()
	ca, err := root.NewIntermediate(cluster)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func signer(t *testing.T, s *Store, cluster string) *certs.CA {
	t.Helper()
	ca, err := s.Signer(cluster)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestStore: the top CA signs for every cluster without a subdirectory of
// its own; a subdirectory's intermediate is picked up on reload; a reload
// that fails (a bundle that differs from the top's) keeps the CAs loaded
// before.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t)
	writeCA(t, dir, root)
	s, err := New(dir, td, nil, slog.New(slog.DiscardHandler), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if top := signer(t, s, "east"); !top.IsRoot() || !top.Certificate().Equal(root.Certificate()) {
		t.Fatalf("east is signed by %v, want the root", top.Certificate().Subject)
	}
	if cur, err := s.Current(); err != nil || !cur.Certificate().Equal(root.Certificate()) {
		t.Fatalf("current %v, %v: want the root", cur, err)
	}

	east := intermediate(t, root, "east")
	writeCA(t, filepath.Join(dir, "east"), east)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := signer(t, s, "east"); got.Cluster() != "east" || !got.Certificate().Equal(east.Certificate()) {
		t.Errorf("east is signed by %v, want its intermediate", got.Certificate().Subject)
	}
	if got := signer(t, s, "west"); !got.IsRoot() {
		t.Errorf("west is signed by %v, want the root", got.Certificate().Subject)
	}

	// An intermediate under another root: refused, the last good CAs stay.
	writeCA(t, filepath.Join(dir, "west"), intermediate(t, newRoot(t), "west"))
	if err := s.Reload(); err == nil {
		t.Error("a cluster CA under another root was accepted")
	}
	if got := signer(t, s, "west"); !got.IsRoot() {
		t.Errorf("after a failed reload west is signed by %v, want the root", got.Certificate().Subject)
	}
	if got := signer(t, s, "east"); !got.Certificate().Equal(east.Certificate()) {
		t.Errorf("after a failed reload east is signed by %v, want its intermediate", got.Certificate().Subject)
	}
}

// TestNewRefusesAMissingDirectory: a directory that cannot be read is an
// error at start, not later.
func TestNewRefusesAMissingDirectory(t *testing.T) {
	if _, err := New(filepath.Join(t.TempDir(), "none"), td, nil, slog.New(slog.DiscardHandler), time.Now); err == nil {
		t.Error("a missing directory was accepted")
	}
}

// An empty directory (no CA yet) is refused at start with LoadDir's error;
// before, its stamp equalled the initial one, nothing was loaded, and the
// first certificate request dereferenced a nil CA (horizon serve --ca-dir
// on an empty directory panicked).
func TestNewRefusesAnEmptyDirectory(t *testing.T) {
	s, err := New(t.TempDir(), td, nil, slog.New(slog.DiscardHandler), time.Now)
	if err == nil {
		ca, cerr := s.Current()
		t.Fatalf("an empty directory was accepted: Current() = %v, %v", ca, cerr)
	}
}
