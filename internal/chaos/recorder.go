package chaos

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/bench/load"
)

// Behaviour is how a recorded proxy answers.
type Behaviour int

const (
	// ACK every response that decodes, as Envoy does.
	ACK Behaviour = iota
	// NACK every response (F7).
	NACK
	// Stuck stops reading at the first response after Stick is called (F6).
	Stuck
)

// Accepted is one accepted version.
type Accepted struct {
	Type    int
	Version string
	At      time.Time
}

// Recorder watches one simulated sidecar (a bench/load Proxy): it keeps
// every version the proxy accepted with its time, and the view it holds
// (the clusterset assignments, as Envoy keeps them across reconnects), and
// checks I1, I4 and I6 on every response as it arrives.
type Recorder struct {
	ID        load.Identity
	Behaviour Behaviour

	env *Env

	mu       sync.Mutex
	view     View
	updated  time.Time // last accepted EDS response
	accepted []Accepted
	pushes   [4]int // responses received, by type
	same     int    // EDS responses whose every assignment was byte-equal to the one held
	setEDS   int    // EDS responses that carried a clusterset assignment
	raw      map[string]string
	asked    [4]map[string]bool
	stream   int
	nacked   [4]string // version NACKed on the current stream
	watches  []watch
	stuck    chan struct{} // closed to release a Stuck proxy
	sticking bool
}

type watch struct {
	name string
	want map[string]uint32
	ch   chan time.Time
}

func newRecorder(env *Env, id load.Identity, b Behaviour) *Recorder {
	return &Recorder{ID: id, Behaviour: b, env: env, view: View{}, stuck: make(chan struct{})}
}

// View returns a copy of what the proxy holds and when it last changed.
func (r *Recorder) View() (View, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := View{}
	for n, eps := range r.view {
		v[n] = maps.Clone(eps)
	}
	return v, r.updated
}

// Pushes returns the responses received so far, by type (load.CDS...).
func (r *Recorder) Pushes() [4]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pushes
}

// ClusterSetPushes returns how many responses could have changed the
// proxy's clusterset assignments: CDS, LDS and RDS responses, and EDS ones
// that carried one. (A member's own cluster.local services, such as
// default/kubernetes, whose endpoint the apiserver removes when it stops,
// are left out.)
func (r *Recorder) ClusterSetPushes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pushes[load.CDS] + r.pushes[load.LDS] + r.pushes[load.RDS] + r.setEDS
}

// Redundant returns how many EDS responses changed nothing the proxy held
// (every assignment byte-equal to the one it had).
func (r *Recorder) Redundant() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.same
}

// Accepted returns every version the proxy accepted, in order.
func (r *Recorder) Accepted() []Accepted {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted)
}

// Stick makes a Stuck proxy stop reading at its next response.
func (r *Recorder) Stick() {
	r.mu.Lock()
	r.sticking = true
	r.mu.Unlock()
}

// Release lets a stuck proxy read again (its stream was likely closed by
// then, and it reconnects).
func (r *Recorder) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sticking {
		r.sticking = false
		close(r.stuck)
	}
}

// Await returns a channel that receives the time the proxy accepted an
// assignment name equal to want (at once if it holds it already).
func (r *Recorder) Await(name string, want map[string]uint32) <-chan time.Time {
	ch := make(chan time.Time, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if maps.Equal(r.view[name], want) {
		ch <- r.updated
		return ch
	}
	r.watches = append(r.watches, watch{name, want, ch})
	return ch
}

var errNACK = errors.New("chaos: this proxy NACKs every version")

// observe is the proxy's Observe hook.
func (r *Recorder) observe(resp load.Response) error {
	r.mu.Lock()
	if resp.Stream != r.stream {
		r.stream, r.nacked, r.asked = resp.Stream, [4]string{}, [4]map[string]bool{}
	}
	r.pushes[resp.Type]++
	if r.asked[resp.Type] == nil {
		r.asked[resp.Type] = map[string]bool{}
	}
	for _, n := range resp.Subscribed {
		r.asked[resp.Type][n] = true
	}
	// I4: a NACKed version is not sent again on the stream.
	if v := r.nacked[resp.Type]; v != "" && v == resp.Version {
		r.env.Violations.Add("I4", r.ID.ID, load.TypeNames[resp.Type], resp.Received, "NACKed version "+v+" sent again")
	}
	stuck := r.Behaviour == Stuck && r.sticking
	r.mu.Unlock()
	if stuck {
		<-r.stuck
	}
	// I6: EDS and RDS responses name only resources the stream asked for.
	if resp.Type == load.EDS || resp.Type == load.RDS {
		for _, a := range resp.Resources {
			name, err := resourceName(resp.Type, a.GetValue())
			if err != nil {
				return err
			}
			r.mu.Lock()
			asked := r.asked[resp.Type][name]
			r.mu.Unlock()
			if !asked {
				r.env.Violations.Add("I6", r.ID.ID, load.TypeNames[resp.Type], resp.Received, name+" was never asked for on this stream")
			}
		}
	}
	if r.Behaviour == NACK {
		r.mu.Lock()
		r.nacked[resp.Type] = resp.Version
		r.mu.Unlock()
		return errNACK
	}
	// State of the world: CDS is the whole set of clusters; an EDS
	// response carries only the assignments it updates, and an assignment
	// leaves only with its cluster (xDS protocol, "full state" types).
	var updates View
	var clusters map[string]bool
	switch resp.Type {
	case load.CDS:
		clusters = map[string]bool{}
		for _, a := range resp.Resources {
			var c cluster.Cluster
			if err := proto.Unmarshal(a.GetValue(), &c); err != nil {
				return fmt.Errorf("cluster: %w", err)
			}
			name := c.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = c.GetName()
			}
			clusters[name] = true
		}
	case load.EDS:
		updates = View{}
		same, cs := len(resp.Resources) > 0, false
		r.mu.Lock()
		if r.raw == nil {
			r.raw = map[string]string{}
		}
		for _, a := range resp.Resources {
			name, err := resourceName(load.EDS, a.GetValue())
			if err != nil {
				r.mu.Unlock()
				return err
			}
			same = same && r.raw[name] == string(a.GetValue())
			if strings.HasSuffix(name, ".svc.clusterset.local") {
				cs = true
			}
			r.raw[name] = string(a.GetValue())
		}
		if same {
			r.same++
		}
		if cs {
			r.setEDS++
		}
		r.mu.Unlock()
		for _, a := range resp.Resources {
			var cla endpoint.ClusterLoadAssignment
			if err := proto.Unmarshal(a.GetValue(), &cla); err != nil {
				return fmt.Errorf("assignment: %w", err)
			}
			if !strings.HasSuffix(cla.GetClusterName(), ".svc.clusterset.local") {
				continue
			}
			eps := map[string]uint32{}
			for _, l := range cla.GetEndpoints() {
				for _, e := range l.GetLbEndpoints() {
					sa := e.GetEndpoint().GetAddress().GetSocketAddress()
					eps[fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())] += e.GetLoadBalancingWeight().GetValue()
				}
			}
			updates[cla.GetClusterName()] = eps
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accepted = append(r.accepted, Accepted{resp.Type, resp.Version, resp.Received})
	if updates == nil && clusters == nil {
		return nil
	}
	next := View{}
	for name, eps := range r.view {
		if clusters == nil || clusters[name] {
			next[name] = eps
		}
	}
	for name, eps := range updates {
		if len(eps) == 0 {
			delete(next, name)
		} else {
			next[name] = eps
		}
	}
	// I1: an endpoint leaves a view only after its member lost something.
	for name, eps := range r.view {
		for addr := range eps {
			if _, ok := next[name][addr]; !ok && !r.env.Ledger.Allows(addr) {
				r.env.Violations.Add("I1", r.ID.ID, name, resp.Received, addr+" disappeared with no removal in its member")
			}
		}
	}
	r.view = next
	if updates != nil {
		r.updated = resp.Received
	}
	kept := r.watches[:0]
	for _, w := range r.watches {
		if maps.Equal(next[w.name], w.want) {
			w.ch <- resp.Received
			continue
		}
		kept = append(kept, w)
	}
	r.watches = kept
	return nil
}

func resourceName(t int, b []byte) (string, error) {
	if t == load.EDS {
		var cla endpoint.ClusterLoadAssignment
		if err := proto.Unmarshal(b, &cla); err != nil {
			return "", fmt.Errorf("assignment: %w", err)
		}
		return cla.GetClusterName(), nil
	}
	var rc route.RouteConfiguration
	if err := proto.Unmarshal(b, &rc); err != nil {
		return "", fmt.Errorf("route configuration: %w", err)
	}
	return rc.GetName(), nil
}
