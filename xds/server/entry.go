package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/xds"
)

// entry is one resource of one view, marshalled once and shared, read-only,
// by every stream that receives it. Its version is a hash of its bytes, so it
// is the same in every process that renders the same resource.
type entry struct {
	name    string
	version string
	msg     types.Resource
	any     *anypb.Any
	// deltaSize is the bytes of the entry as an element of an incremental
	// response's resources (a Resource of its name, version and any; the
	// codec writes it from the entry: deltaResponse).
	deltaSize int
}

func newEntry(typeURL string, res types.Resource) (*entry, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("marshal %s %q: %w", xds.ShortType(typeURL), xds.ResourceName(res), err)
	}
	sum := sha256.Sum256(b)
	e := &entry{
		name:    xds.ResourceName(res),
		version: hex.EncodeToString(sum[:12]),
		msg:     res,
		any:     &anypb.Any{TypeUrl: typeURL, Value: b},
	}
	_, e.deltaSize = resourceHeaderSize(e.version, e.name, e.any)
	return e, nil
}

// typeState is one resource type of one view.
type typeState struct {
	typeURL string
	entries map[string]*entry
	names   []string // sorted
	version string   // hash of every (name, version): the type's system version
	// seq tells states apart without holding them: unique in the process,
	// never 0 (a diff from nothing).
	seq uint64

	// diffs memoises diffFrom: the streams equally far behind share one.
	// A memo names the state it is from by its seq, not a pointer: each
	// publish memoises the diff from the previous state, and a pointer
	// would keep every state the view ever published reachable through
	// the next one's memo.
	mu    sync.Mutex
	diffs [4]diffMemo
	next  int // round-robin slot of diffs to replace
}

// typeDiff is what differs between two states of a type: the names added,
// changed or removed, sorted.
type typeDiff struct{ names []string }

type diffMemo struct {
	from uint64 // the seq of the state the diff is from; 0: nothing
	d    *typeDiff
}

// typeStates numbers typeStates (typeState.seq).
var typeStates atomic.Uint64

// seqOf is the seq of ts, 0 for nil.
func seqOf(ts *typeState) uint64 {
	if ts == nil {
		return 0
	}
	return ts.seq
}

// diffFrom returns the names whose entry differs between from (nil: an
// empty state) and ts. Views compute it once per publish for the previous
// state (the diff that decides which streams are woken), and streams
// behind by more ask for theirs: those equally behind share it.
func (ts *typeState) diffFrom(from *typeState) *typeDiff {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	seq := seqOf(from)
	for _, m := range ts.diffs {
		if m.d != nil && m.from == seq {
			return m.d
		}
	}
	d := &typeDiff{names: ts.names}
	if from != nil {
		d.names = changedNames(from, ts)
	}
	ts.diffs[ts.next] = diffMemo{from: seq, d: d}
	ts.next = (ts.next + 1) % len(ts.diffs)
	return d
}

// newTypeState marshals a view's resources of one type. A resource that is
// the very message prev holds under its name (the render reused it) keeps
// prev's entry: published messages are never modified.
func newTypeState(typeURL string, resources []types.Resource, prev *typeState) (*typeState, error) {
	ts := &typeState{typeURL: typeURL, entries: make(map[string]*entry, len(resources)), seq: typeStates.Add(1)}
	for _, r := range resources {
		if prev != nil {
			if e := prev.entries[xds.ResourceName(r)]; e != nil && e.msg == r {
				ts.entries[e.name] = e
				ts.names = append(ts.names, e.name)
				continue
			}
		}
		e, err := newEntry(typeURL, r)
		if err != nil {
			return nil, err
		}
		ts.entries[e.name] = e
		ts.names = append(ts.names, e.name)
	}
	slices.Sort(ts.names)
	versions := make(map[string]string, len(ts.entries))
	for name, e := range ts.entries {
		versions[name] = e.version
	}
	ts.version = stateVersion(versions)
	return ts, nil
}

// stateVersion hashes a client's state (resource name -> version) into the
// version_info of a state-of-the-world response. A client that reconnects
// with it can be recognised as holding exactly that state.
func stateVersion(versions map[string]string) string {
	h := sha256.New()
	for _, n := range slices.Sorted(maps.Keys(versions)) {
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(versions[n]))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
