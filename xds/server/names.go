package server

import (
	"slices"
	"strings"
	"sync"
)

// nameSet is the set of resource names a stream subscribes to by name. It
// is immutable once made and interned (see interner): the thousand
// sidecars of a view that ask for the same 500 assignments share one copy,
// and what is computed from it against a published state (which of its
// names exist, their state-of-the-world version, whether a diff touches
// it) is computed once for all of them and kept here.
type nameSet struct {
	key   string   // the names joined by "\x00": the intern key; names point into it
	names []string // sorted, unique
	set   map[string]struct{}
	refs  int // streams holding it; guarded by interner.mu

	mu      sync.Mutex
	present [2]presentMemo // the last states asked about, see presentIn
	touched [4]touchedMemo // the last diffs asked about, see touches
	next    int            // round-robin slot of touched to replace
}

type presentMemo struct {
	ts      *typeState
	names   []string // of ts's names, those in the set, sorted
	version string   // stateVersion of those names at ts's versions
}

type touchedMemo struct {
	d   *typeDiff
	hit bool
}

func (s *nameSet) has(n string) bool {
	if s == nil {
		return false
	}
	_, ok := s.set[n]
	return ok
}

func (s *nameSet) len() int {
	if s == nil {
		return 0
	}
	return len(s.names)
}

// presentIn returns which names of the set ts holds, sorted, and the
// state-of-the-world version of a client holding exactly those (what
// stateVersion gives for them).
func (s *nameSet) presentIn(ts *typeState) ([]string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.present {
		if m.ts == ts {
			return m.names, m.version
		}
	}
	var names []string
	versions := make(map[string]string, len(s.names))
	for _, n := range s.names {
		if e := ts.entries[n]; e != nil {
			names = append(names, n)
			versions[n] = e.version
		}
	}
	m := presentMemo{ts: ts, names: names, version: ts.version}
	if len(names) != len(ts.entries) {
		m.version = stateVersion(versions)
	}
	s.present[1], s.present[0] = s.present[0], m
	return m.names, m.version
}

// touches reports whether any name of d is in the set.
func (s *nameSet) touches(d *typeDiff) bool {
	if s == nil || len(d.names) == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.touched {
		if m.d == d {
			return m.hit
		}
	}
	hit := false
	if len(d.names) <= len(s.names) {
		for _, n := range d.names {
			if _, ok := s.set[n]; ok {
				hit = true
				break
			}
		}
	} else {
		for _, n := range s.names {
			if _, found := slices.BinarySearch(d.names, n); found {
				hit = true
				break
			}
		}
	}
	s.touched[s.next] = touchedMemo{d: d, hit: hit}
	s.next = (s.next + 1) % len(s.touched)
	return hit
}

// interner hands out one nameSet per distinct set of names, and forgets a
// set when the last stream holding it lets it go.
type interner struct {
	mu   sync.Mutex
	sets map[string]*nameSet
}

func newInterner() *interner { return &interner{sets: map[string]*nameSet{}} }

// get returns the set of names (any order, duplicates allowed), nil for
// none, with one more reference.
func (in *interner) get(names []string) *nameSet {
	if len(names) == 0 {
		return nil
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	key := strings.Join(sorted, "\x00")
	in.mu.Lock()
	defer in.mu.Unlock()
	if s, ok := in.sets[key]; ok {
		s.refs++
		return s
	}
	s := &nameSet{key: key, names: make([]string, len(sorted)), set: make(map[string]struct{}, len(sorted)), refs: 1}
	// The names share the key's bytes.
	off := 0
	for i, n := range sorted {
		s.names[i] = key[off : off+len(n)]
		s.set[s.names[i]] = struct{}{}
		off += len(n) + 1
	}
	in.sets[key] = s
	return s
}

// release gives back a reference taken by get.
func (in *interner) release(s *nameSet) {
	if s == nil {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if s.refs--; s.refs <= 0 {
		delete(in.sets, s.key)
	}
}

// len returns how many distinct sets are held.
func (in *interner) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.sets)
}
