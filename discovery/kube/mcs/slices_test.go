package mcs

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/horizonmesh/horizon/discovery"
)

// ep is an endpoint of a test service: its address, and "h=<hostname>",
// "z=<zone>", "notready", "terminating", "port=<n>" options.
func ep(addr string, opts ...string) discovery.Endpoint {
	e := discovery.Endpoint{Address: addr, Ready: true, Serving: true}
	for _, o := range opts {
		switch k, v, _ := strings.Cut(o, "="); k {
		case "h":
			e.Hostname = v
		case "z":
			e.Locality.Zone = v
		case "notready":
			e.Ready, e.Serving = false, false
		case "terminating":
			e.Ready, e.Terminating = false, true
		case "port":
			var n uint32
			fmt.Sscan(v, &n)
			e.Ports = map[string]uint32{"http": n}
		}
	}
	return e
}

func endpointsFrom(prefix string, n int) []discovery.Endpoint {
	base := netip.MustParseAddr(prefix)
	var out []discovery.Endpoint
	for range n {
		base = base.Next()
		out = append(out, ep(base.String()))
	}
	return out
}

// exported is the service demo/echo exported by a cluster, with endpoints.
func exported(eps []discovery.Endpoint) discovery.Service {
	slices.SortFunc(eps, func(a, b discovery.Endpoint) int { return strings.Compare(a.Address, b.Address) })
	return discovery.Service{
		Namespace: "demo", Name: "echo", Type: discovery.ClusterSetIP, Exported: true,
		ExportedAt: time.Unix(1000, 0),
		Ports:      []discovery.Port{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP", AppProtocol: "http"}},
		Endpoints:  eps,
	}
}

func clusterSet(t *testing.T, clusters ...discovery.Cluster) *discovery.ClusterSet {
	t.Helper()
	cs, err := discovery.New(clusters)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func member(id string, existing ...SliceState) SliceMemberState {
	return SliceMemberState{ID: id, Namespaces: []string{"demo"}, Slices: existing}
}

// summarize renders a plan's slices as "cluster/name: addr,addr".
func summarize(p SlicePlan) []string {
	var out []string
	for _, w := range p.Writes {
		var addrs []string
		for _, e := range w.Endpoints {
			addrs = append(addrs, e.Addresses[0])
		}
		out = append(out, fmt.Sprintf("%s/%s: %s", w.Cluster, w.Name, strings.Join(addrs, ",")))
	}
	return out
}

// held is what a member holds after a plan's writes and deletes were made
// over existing.
func held(p SlicePlan, m SliceMemberState) SliceMemberState {
	gone := map[string]bool{}
	for _, d := range p.Deletes {
		if d.Cluster == m.ID {
			gone[d.Namespace+"/"+d.Name] = true
		}
	}
	out := SliceMemberState{ID: m.ID, Namespaces: m.Namespaces}
	written := map[string]bool{}
	for _, w := range p.Writes {
		if w.Cluster != m.ID {
			continue
		}
		written[w.Namespace+"/"+w.Name] = true
		s := SliceState{Namespace: w.Namespace, Name: w.Name, Managed: true, Service: w.Service, Source: w.Source, Family: w.Family, Ports: portSignature(w.Ports)}
		for _, e := range w.Endpoints {
			s.Addresses = append(s.Addresses, e.Addresses[0])
		}
		out.Slices = append(out.Slices, s)
	}
	for _, s := range m.Slices {
		if !gone[s.Namespace+"/"+s.Name] && !written[s.Namespace+"/"+s.Name] {
			out.Slices = append(out.Slices, s)
		}
	}
	return out
}

// changedSlices counts, per member, the slices plan b writes differently
// from plan a, plus b's deletes.
func changedSlices(a, b SlicePlan) map[string]int {
	before := map[Ref]Slice{}
	for _, w := range a.Writes {
		before[w.Ref] = w
	}
	out := map[string]int{}
	for _, w := range b.Writes {
		if old, ok := before[w.Ref]; !ok || !reflect.DeepEqual(old, w) {
			out[w.Cluster]++
		}
	}
	for _, d := range b.Deletes {
		out[d.Cluster]++
	}
	return out
}

func TestDesiredSlicesChunksAndLabels(t *testing.T) {
	cs := clusterSet(t,
		discovery.Cluster{Name: "east", Network: "net-a", Services: []discovery.Service{exported(append(endpointsFrom("10.1.0.0", 250),
			ep("fd00::1", "h=web-0", "z=zone-a"), ep("fd00::2", "terminating")))}},
		discovery.Cluster{Name: "central", Network: "net-a"},
	)
	plan := DesiredSlices(cs, []SliceMemberState{member("east"), member("central"), {ID: "nons"}}, nil, 100)
	sizes := map[string]int{}
	for _, w := range plan.Writes {
		sizes[w.Cluster+"/"+w.Name] = len(w.Endpoints)
		want := map[string]string{
			"multicluster.kubernetes.io/service-name":   "echo",
			"multicluster.kubernetes.io/source-cluster": "east",
			"endpointslice.kubernetes.io/managed-by":    "mcs-controller.horizon.io",
			"app.kubernetes.io/managed-by":              "horizon",
		}
		if !reflect.DeepEqual(w.Labels(), want) {
			t.Errorf("%s labels %v", w.Name, w.Labels())
		}
		if len(w.Ports) != 1 || *w.Ports[0].Name != "http" || *w.Ports[0].Port != 8080 || *w.Ports[0].AppProtocol != "http" {
			t.Errorf("%s ports %v", w.Name, w.Ports)
		}
		if w.Family == discoveryv1.AddressTypeIPv6 {
			e0, e1 := w.Endpoints[0], w.Endpoints[1]
			if deref(e0.Hostname) != "web-0" || deref(e0.Zone) != "zone-a" || !*e0.Conditions.Ready {
				t.Errorf("fd00::1 is %+v", e0)
			}
			if *e1.Conditions.Ready || !*e1.Conditions.Serving || !*e1.Conditions.Terminating {
				t.Errorf("fd00::2 conditions %+v", e1.Conditions)
			}
		}
	}
	want := map[string]int{}
	for _, m := range []string{"central", "east"} {
		want[m+"/echo-east-ipv4-0"], want[m+"/echo-east-ipv4-1"], want[m+"/echo-east-ipv4-2"], want[m+"/echo-east-ipv6-0"] = 100, 100, 50, 2
	}
	if !reflect.DeepEqual(sizes, want) {
		t.Errorf("slices %v, want %v", sizes, want)
	}
	if len(plan.Deletes) != 0 {
		t.Errorf("deletes %v", plan.Deletes)
	}
	// Same input, same plan (the members in another order).
	again := DesiredSlices(cs, []SliceMemberState{{ID: "nons"}, member("central"), member("east")}, nil, 100)
	if !reflect.DeepEqual(plan, again) {
		t.Error("the plan depends on the members' order")
	}
	// A member the ClusterSet does not know has an unknown network: nothing
	// is written or deleted there.
	stranger := member("north", SliceState{Namespace: "demo", Name: "echo-east-ipv4-0", Managed: true, Service: "echo", Source: "east", Family: discoveryv1.AddressTypeIPv4})
	if p := DesiredSlices(cs, []SliceMemberState{stranger}, nil, 100); len(p.Writes)+len(p.Deletes)+len(p.LeftOut) != 0 {
		t.Errorf("unknown member: %+v", p)
	}
	// A configurable size.
	if n := len(DesiredSlices(cs, []SliceMemberState{member("east")}, nil, 1000).Writes); n != 2 {
		t.Errorf("max 1000: %d slices, want 2", n)
	}
}

func TestDesiredSlicesSplitHorizon(t *testing.T) {
	cs := clusterSet(t,
		discovery.Cluster{Name: "east", Network: "net-a", Services: []discovery.Service{exported(endpointsFrom("10.1.0.0", 2))}},
		discovery.Cluster{Name: "central", Network: "net-a"},
		discovery.Cluster{Name: "west", Network: "net-b", Services: []discovery.Service{exported(endpointsFrom("10.2.0.0", 3))}},
	)
	plan := DesiredSlices(cs, []SliceMemberState{member("east"), member("central"), member("west")}, nil, 100)
	want := []string{
		"central/echo-east-ipv4-0: 10.1.0.1,10.1.0.2",
		"east/echo-east-ipv4-0: 10.1.0.1,10.1.0.2",
		"west/echo-west-ipv4-0: 10.2.0.1,10.2.0.2,10.2.0.3",
	}
	if got := summarize(plan); !slices.Equal(got, want) {
		t.Errorf("slices\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	counts := map[string]int{}
	for _, l := range plan.LeftOut {
		counts[l.Cluster] = l.Count
		if l.Count > 0 && !strings.Contains(l.Reason, "network") {
			t.Errorf("%s: reason %q", l.Cluster, l.Reason)
		}
	}
	if !reflect.DeepEqual(counts, map[string]int{"central": 3, "east": 3, "west": 2}) {
		t.Errorf("left out %v", counts)
	}
	if r := plan.LeftOut[2].Reason; !strings.Contains(r, "2 of cluster east on network net-a") {
		t.Errorf("west's reason %q", r)
	}
	// A foreign import gets neither slices nor annotations.
	plan = DesiredSlices(cs, []SliceMemberState{member("central")}, []Ref{{"central", "demo", "echo"}}, 100)
	if len(plan.Writes)+len(plan.LeftOut) != 0 {
		t.Errorf("foreign import: %v", plan)
	}
}

func TestDesiredSlicesGarbage(t *testing.T) {
	cs := clusterSet(t,
		discovery.Cluster{Name: "east", Network: "net-a", Services: []discovery.Service{exported(endpointsFrom("10.1.0.0", 1))}},
	)
	mine := func(name, svc, src string) SliceState {
		return SliceState{Namespace: "demo", Name: name, Managed: true, Service: svc, Source: src, Family: discoveryv1.AddressTypeIPv4, Addresses: []string{"10.9.9.9"}}
	}
	m := member("east",
		SliceState{Namespace: "demo", Name: "echo-east-ipv4-0"},                       // unmanaged, in the way
		SliceState{Namespace: "demo", Name: "other", Service: "echo", Source: "east"}, // unmanaged, same labels
		mine("gone-east-ipv4-0", "gone", "east"),                                      // unexported
		mine("echo-north-ipv4-0", "echo", "north"),                                    // source left
		mine("echo-east-ipv4-7", "echo", "east"),                                      // kept, refilled
		mine("echo-east-ipv4-9", "echo", "east"),                                      // emptied
		SliceState{Namespace: "old", Name: "x", Managed: true, Service: "echo", Source: "east", Family: discoveryv1.AddressTypeIPv4}, // namespace gone
	)
	plan := DesiredSlices(cs, []SliceMemberState{m}, nil, 100)
	if got, want := summarize(plan), []string{"east/echo-east-ipv4-7: 10.1.0.1"}; !slices.Equal(got, want) {
		t.Errorf("writes %v, want %v", got, want)
	}
	var deletes []string
	for _, d := range plan.Deletes {
		deletes = append(deletes, d.Namespace+"/"+d.Name)
	}
	if want := []string{"demo/echo-east-ipv4-9", "demo/echo-north-ipv4-0", "demo/gone-east-ipv4-0", "old/x"}; !slices.Equal(deletes, want) {
		t.Errorf("deletes %v, want %v", deletes, want)
	}
	// A new slice skips names taken by slices Horizon does not manage.
	plan = DesiredSlices(cs, []SliceMemberState{member("east", SliceState{Namespace: "demo", Name: "echo-east-ipv4-0"})}, nil, 100)
	if got := summarize(plan); !slices.Equal(got, []string{"east/echo-east-ipv4-1: 10.1.0.1"}) {
		t.Errorf("writes %v", got)
	}
}

// TestDesiredSlicesMinimalChanges: after any change of one endpoint, each
// member's plan differs from the last in one slice at most, over random
// services.
func TestDesiredSlicesMinimalChanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := 1 + rng.IntN(350)
		eps := endpointsFrom("10.1.0.0", n)
		build := func(eps []discovery.Endpoint) *discovery.ClusterSet {
			return clusterSet(t,
				discovery.Cluster{Name: "east", Network: "net-a", Services: []discovery.Service{exported(slices.Clone(eps))}},
				discovery.Cluster{Name: "central", Network: "net-a"},
			)
		}
		members := []SliceMemberState{member("east"), member("central")}
		first := DesiredSlices(build(eps), members, nil, 100)
		for i := range members {
			members[i] = held(first, members[i])
		}
		// Settled: planning again changes nothing.
		if c := changedSlices(first, DesiredSlices(build(eps), members, nil, 100)); len(c) != 0 {
			t.Fatalf("round %d: a settled plan changes %v", round, c)
		}
		next := slices.Clone(eps)
		i := rng.IntN(len(next))
		change := ""
		switch rng.IntN(4) {
		case 0:
			change = "remove " + next[i].Address
			next = slices.Delete(next, i, i+1)
		case 1:
			change = "add"
			next = append(next, ep("10.3.0."+fmt.Sprint(rng.IntN(250)+1)))
		case 2:
			change = "not ready " + next[i].Address
			next[i].Ready, next[i].Serving = false, false
		case 3:
			change = "new port " + next[i].Address
			next[i].Ports = map[string]uint32{"http": 9090}
		}
		second := DesiredSlices(build(next), members, nil, 100)
		for m, c := range changedSlices(first, second) {
			// A new port set moves the endpoint to another slice: the old
			// one changes and the new one is written.
			limit := 1
			if strings.HasPrefix(change, "new port") {
				limit = 2
			}
			if c > limit {
				t.Fatalf("round %d (%d endpoints, %s): %s changes %d slices", round, n, change, m, c)
			}
		}
		for _, w := range second.Writes {
			if len(w.Endpoints) > 100 {
				t.Fatalf("round %d: %s holds %d endpoints", round, w.Name, len(w.Endpoints))
			}
		}
		if got := countEndpoints(second, "east"); got != len(next) {
			t.Fatalf("round %d (%s): east's slices hold %d endpoints, want %d", round, change, got, len(next))
		}
	}
}

func countEndpoints(p SlicePlan, member string) int {
	seen := map[string]bool{}
	for _, w := range p.Writes {
		if w.Cluster != member {
			continue
		}
		for _, e := range w.Endpoints {
			seen[e.Addresses[0]] = true
		}
	}
	return len(seen)
}

func TestSliceConfigBounds(t *testing.T) {
	cfg := Config{Members: func() []Member { return nil }, ClusterSet: func() *discovery.ClusterSet { return nil }}
	c, err := New(cfg)
	if err != nil || c.cfg.Slices.MaxEndpoints != DefaultMaxEndpointsPerSlice {
		t.Errorf("default: %v, max %d", err, c.cfg.Slices.MaxEndpoints)
	}
	for _, n := range []int{-1, 1001} {
		cfg.Slices.MaxEndpoints = n
		if _, err := New(cfg); err == nil {
			t.Errorf("max %d accepted", n)
		}
	}
}

// TestDesiredSlicesSkipsBadAddresses: the model refuses an endpoint whose
// address is no IP (discovery.New); the IPs it takes but the API server
// refuses in an EndpointSlice (a zone, IPv4-mapped IPv6, loopback,
// link-local, unspecified) are in no slice, and the valid ones are.
func TestDesiredSlicesSkipsBadAddresses(t *testing.T) {
	for _, addr := range []string{"db.example.com", "not-an-ip", "10.1.0.010"} {
		_, err := discovery.New([]discovery.Cluster{{Name: "east", Network: "net-a", Services: []discovery.Service{exported([]discovery.Endpoint{ep(addr)})}}})
		if err == nil {
			t.Errorf("the model takes endpoint address %q", addr)
		}
	}
	svc := exported([]discovery.Endpoint{ep("10.1.0.1"), ep("fe80::1%eth0"), ep("10.1.0.2"), ep("fd00::1"),
		ep("::ffff:10.1.0.3"), ep("127.0.0.1"), ep("::1"), ep("169.254.0.1"), ep("fe80::1"), ep("224.0.0.1"), ep("0.0.0.0")})
	cs := clusterSet(t,
		discovery.Cluster{Name: "east", Network: "net-a", Services: []discovery.Service{svc}},
		discovery.Cluster{Name: "west", Network: "net-a"},
	)
	plan := DesiredSlices(cs, []SliceMemberState{member("east"), member("west")}, nil, 100)
	want := []string{
		"east/echo-east-ipv4-0: 10.1.0.1,10.1.0.2", "east/echo-east-ipv6-0: fd00::1",
		"west/echo-east-ipv4-0: 10.1.0.1,10.1.0.2", "west/echo-east-ipv6-0: fd00::1",
	}
	if got := summarize(plan); !slices.Equal(got, want) {
		t.Errorf("slices %q, want %q", got, want)
	}
}
