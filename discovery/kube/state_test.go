package kube

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/discovery"
)

// installState copies a testdata state file into dir as member's file.
func installState(t *testing.T, dir, member, testdata string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "state", testdata))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, member+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFileStoreLoadsTestdata(t *testing.T) {
	dir := t.TempDir()
	path := installState(t, dir, "east", "east.json")
	fs := &FileStore{Dir: dir}
	s, err := fs.Load("east")
	if err != nil {
		t.Fatal(err)
	}
	if s.Origin != path || s.Server != "https://east.example:6443" || s.TrustDomain != "example.org" ||
		!s.Saved.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("header %+v", s)
	}
	c := s.Cluster
	if c.Name != "east" || c.Network != "net-east" || len(c.Gateways) != 1 || len(c.Services) != 1 ||
		len(c.Services[0].Endpoints) != 2 || c.Services[0].Endpoints[0].Ports["grpc"] != 7070 ||
		!c.Services[0].Exported || c.Services[0].ExportedAt.IsZero() {
		t.Fatalf("cluster %+v", c)
	}
	if ips := c.ImportIPs[discovery.ServiceKey{Namespace: "demo", Name: "echo"}]; len(ips) != 1 || ips[0] != "241.0.0.1" {
		t.Fatalf("import IPs %v", c.ImportIPs)
	}
	if s, err := fs.Load("west"); s != nil || err != nil {
		t.Fatalf("a member without a file: %v %v, want nothing", s, err)
	}
}

// TestFileStoreRefuses: every unusable file is refused with its path and a
// reason, never half-read.
func TestFileStoreRefuses(t *testing.T) {
	for _, tc := range []struct {
		file, reason, text string
	}{
		{"truncated.json", StateCorrupt, "unexpected end of JSON"},
		{"noformat.json", StateVersion, `format ""`},
		{"version.json", StateVersion, `format "horizon.member-state/v2"`},
		{"othermember.json", StateForeign, `written for member "west", not "east"`},
		{"badaddress.json", StateCorrupt, "not an IP address"},
		{"unknownfield.json", StateCorrupt, `unknown field "trustDomian"`},
		{"nosavetime.json", StateCorrupt, "no save time"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir := t.TempDir()
			path := installState(t, dir, "east", tc.file)
			s, err := (&FileStore{Dir: dir}).Load("east")
			if s != nil || err == nil {
				t.Fatalf("loaded %+v", s)
			}
			var se *StateError
			if !errors.As(err, &se) || se.Reason != tc.reason || stateReason(err) != tc.reason {
				t.Fatalf("error %v, want reason %s", err, tc.reason)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %q does not name %s and say %q", err, path, tc.text)
			}
		})
	}
}

func TestStateIdentity(t *testing.T) {
	dir := t.TempDir()
	installState(t, dir, "east", "east.json")
	s, err := (&FileStore{Dir: dir}).Load("east")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.checkIdentity("https://east.example:6443", "example.org", "net-east"); err != nil {
		t.Fatalf("own state refused: %v", err)
	}
	for _, tc := range []struct{ server, td, network, text string }{
		{"https://other.example:6443", "example.org", "net-east", "API server"},
		{"https://east.example:6443", "other.org", "net-east", "trust domain"},
		{"https://east.example:6443", "example.org", "net-moved", "network"},
	} {
		err := s.checkIdentity(tc.server, tc.td, tc.network)
		if stateReason(err) != StateForeign || !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), s.Origin) {
			t.Errorf("%+v: %v, want a foreign %s naming %s", tc, err, tc.text, s.Origin)
		}
	}
}

func testState(member string, endpoints int) *MemberState {
	svc := discovery.Service{Namespace: "demo", Name: "echo", Type: discovery.ClusterSetIP, Exported: true,
		ExportedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Ports:      []discovery.Port{{Name: "grpc", Port: 7070, Protocol: "TCP", AppProtocol: "grpc"}}}
	for i := range endpoints {
		svc.Endpoints = append(svc.Endpoints, discovery.Endpoint{
			Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Ready: true, Serving: true, MTLS: true,
			ServiceAccount: "echo", Labels: map[string]string{"app": "echo"},
		})
	}
	return &MemberState{
		Member: member, Server: "https://" + member + ":6443", TrustDomain: "example.org",
		Saved: time.Date(2026, 12, 7, 10, 0, 0, 123, time.UTC),
		Cluster: discovery.Cluster{Name: member, Network: "net-" + member,
			Gateways:  []discovery.Gateway{{Address: "198.51.100.1", Port: 15443}},
			Services:  []discovery.Service{svc},
			ImportIPs: map[discovery.ServiceKey][]string{{Namespace: "demo", Name: "echo"}: {"241.0.0.1"}}},
	}
}

func TestFileStoreRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // created by Save
	fs := &FileStore{Dir: dir}
	want := testState("east", 3)
	if err := fs.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := fs.Load("east")
	if err != nil {
		t.Fatal(err)
	}
	if got.Format != StateFormat || got.Origin != fs.Path("east") {
		t.Fatalf("format %q origin %q", got.Format, got.Origin)
	}
	got.Format, got.Origin = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	if fi, err := os.Stat(fs.Path("east")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file %v %v, want mode 0600", fi, err)
	}
}

// TestFileStoreAtomicAndBounded: a save replaces the file whole and leaves
// no temporary file; a state past the bound is neither written (the old file
// stays) nor read; a temporary file a crash left behind is ignored.
func TestFileStoreAtomicAndBounded(t *testing.T) {
	dir := t.TempDir()
	small := &FileStore{Dir: dir, MaxBytes: 4096}
	if err := small.Save(testState("east", 2)); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(small.Path("east"))
	if err != nil {
		t.Fatal(err)
	}
	err = small.Save(testState("east", 100))
	if err == nil || !strings.Contains(err.Error(), "more than the 4096 allowed") {
		t.Fatalf("oversized save: %v", err)
	}
	after, err := os.ReadFile(small.Path("east"))
	if err != nil || string(after) != string(before) {
		t.Fatalf("a refused save changed the file (%v)", err)
	}
	// A crash between write and rename leaves a temporary file: ignored.
	if err := os.WriteFile(filepath.Join(dir, ".east.123.tmp"), []byte("{half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := small.Load("east"); err != nil || len(s.Cluster.Services[0].Endpoints) != 2 {
		t.Fatalf("load beside a temporary file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("files %v, want east.json and the planted temporary file", entries)
	}

	// Written by a store with a larger bound, refused by the small one.
	if err := (&FileStore{Dir: dir}).Save(testState("east", 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := small.Load("east"); stateReason(err) != StateTooLarge || !strings.Contains(err.Error(), small.Path("east")) {
		t.Fatalf("oversized load: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("files %v after saves, want no new temporary file", entries)
	}
}

func TestFileStoreMemberNames(t *testing.T) {
	fs := &FileStore{Dir: t.TempDir()}
	for _, name := range []string{"../east", "a/b", ".hidden", "", "east\n"} {
		if _, err := fs.Load(name); err == nil {
			t.Errorf("Load(%q) accepted", name)
		}
		s := testState("east", 1)
		s.Member = name
		if err := fs.Save(s); err == nil {
			t.Errorf("Save(%q) accepted", name)
		}
	}
}
