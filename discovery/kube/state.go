package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/horizonmesh/horizon/discovery"
)

// A member's last known state is persisted so that a restarted Horizon can
// serve a member whose API server is down (see SourceOptions.State):
//
//	Source.publish ──(live members, debounced)──▶ persister ──Save──▶ StateStore
//	Source.publish ◀──Load (once, after SyncWait, members not yet synced)──┘
//
// What is kept is the member's discovery.Cluster as the ClusterSet holds it,
// with what it belongs to (member name, API server, trust domain) and when it
// was last known to be current. Staleness is counted from that time, so
// --stale-ttl keeps applying across restarts.

// StateFormat names the format of a persisted member state. A file of
// another format is refused, never guessed at.
const StateFormat = "horizon.member-state/v1"

// DefaultStateMaxBytes bounds one member's encoded state.
const DefaultStateMaxBytes = 64 << 20

// MemberState is what a StateStore keeps of one member.
type MemberState struct {
	Format string `json:"format"`
	// Member is the configured member name; Server its API server URL;
	// TrustDomain Horizon's. A state whose identity differs from the
	// member's configuration is foreign and refused.
	Member      string `json:"member"`
	Server      string `json:"server"`
	TrustDomain string `json:"trustDomain"`
	// Saved is when the state was last known current: the member was
	// reachable and this was its content.
	Saved   time.Time         `json:"saved"`
	Cluster discovery.Cluster `json:"cluster"`
	// Origin says where the state was read from (a file), for errors and
	// logs; not stored.
	Origin string `json:"-"`
}

// StateStore keeps each member's last known state. Load returns (nil, nil)
// when it holds none for the member, and a *StateError when what it holds
// is unusable.
type StateStore interface {
	Load(member string) (*MemberState, error)
	Save(s *MemberState) error
}

// Reasons a persisted state is refused, the label of
// horizon_kube_state_load_errors_total.
const (
	StateCorrupt  = "corrupt" // not a state document, or an invalid cluster
	StateVersion  = "version" // another format
	StateForeign  = "foreign" // another member, API server, trust domain or network
	StateTooLarge = "too_large"
	StateIO       = "io"
)

// StateError is a persisted state that cannot be used, and why.
type StateError struct {
	Origin string // the file or object
	Reason string // StateCorrupt, StateVersion, ...
	Err    error
}

func (e *StateError) Error() string {
	return fmt.Sprintf("member state %s: %s: %v", e.Origin, e.Reason, e.Err)
}

func (e *StateError) Unwrap() error { return e.Err }

// stateReason is the metric label of a load error.
func stateReason(err error) string {
	if se, ok := errors.AsType[*StateError](err); ok {
		return se.Reason
	}
	return StateIO
}

// memberName is what a member name must look like to name a state file or
// object: a DNS subdomain-like name, never a path.
var memberName = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,251}[a-zA-Z0-9])?$`)

func checkMemberName(name string) error {
	if !memberName.MatchString(name) {
		return fmt.Errorf("member name %q: cannot name a state (want letters, digits, '.', '-', '_')", name)
	}
	return nil
}

// EncodeState renders a state for a store, refusing one larger than max
// bytes.
func EncodeState(s *MemberState, max int) ([]byte, error) {
	out := *s
	out.Format = StateFormat
	b, err := json.Marshal(&out)
	if err != nil {
		return nil, fmt.Errorf("member %s: encode state: %w", s.Member, err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("member %s: state is %d bytes, more than the %d allowed", s.Member, len(b), max)
	}
	return b, nil
}

// DecodeState reads a state a store holds for member; origin names it in
// errors. It checks the format, that the document names member, and that
// its cluster is valid on its own; Source checks the rest of its identity.
func DecodeState(origin, member string, b []byte, max int) (*MemberState, error) {
	fail := func(reason string, err error) (*MemberState, error) {
		return nil, &StateError{Origin: origin, Reason: reason, Err: err}
	}
	if len(b) > max {
		return fail(StateTooLarge, fmt.Errorf("%d bytes, more than the %d allowed", len(b), max))
	}
	var head struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fail(StateCorrupt, err)
	}
	if head.Format != StateFormat {
		return fail(StateVersion, fmt.Errorf("format %q, want %q", head.Format, StateFormat))
	}
	var s MemberState
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fail(StateCorrupt, err)
	}
	if dec.More() {
		return fail(StateCorrupt, errors.New("data after the document"))
	}
	if s.Member != member {
		return fail(StateForeign, fmt.Errorf("written for member %q, not %q", s.Member, member))
	}
	if s.Saved.IsZero() {
		return fail(StateCorrupt, errors.New("no save time"))
	}
	// The cluster must stand on its own, or it would stop every ClusterSet.
	if _, err := discovery.New([]discovery.Cluster{s.Cluster.Clone()}); err != nil {
		return fail(StateCorrupt, err)
	}
	s.Origin = origin
	return &s, nil
}

// checkIdentity refuses a state written for another API server, trust
// domain or network than the member's.
func (s *MemberState) checkIdentity(server, trustDomain, network string) error {
	var err error
	switch {
	case s.Server != server:
		err = fmt.Errorf("written for API server %q, not %q", s.Server, server)
	case s.TrustDomain != trustDomain:
		err = fmt.Errorf("written for trust domain %q, not %q", s.TrustDomain, trustDomain)
	case s.Cluster.Network != network:
		err = fmt.Errorf("written for network %q, not %q", s.Cluster.Network, network)
	}
	if err != nil {
		return &StateError{Origin: s.Origin, Reason: StateForeign, Err: err}
	}
	return nil
}
