package mcs_test

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
)

func TestNewAllocator(t *testing.T) {
	for _, tc := range []struct {
		cidrs []string
		want  []string // prefixes, or nil for an error
	}{
		{nil, []string{"240.240.0.0/16"}},
		{[]string{"10.1.2.3/24"}, []string{"10.1.2.0/24"}},
		{[]string{"fd00::/64", "240.240.0.0/16"}, []string{"240.240.0.0/16", "fd00::/64"}},
		{[]string{"240.240.0.0/16", "10.0.0.0/8"}, nil}, // two IPv4 ranges
		{[]string{"240.240.0.0/31"}, nil},               // too small
		{[]string{"240.240.0.0"}, nil},                  // not a CIDR
	} {
		a, err := mcs.NewAllocator(tc.cidrs...)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%v: no error", tc.cidrs)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.cidrs, err)
			continue
		}
		got := fmt.Sprint(a.Prefixes())
		if want := fmt.Sprint(prefixes(tc.want)); got != want {
			t.Errorf("%v: prefixes %s, want %s", tc.cidrs, got, want)
		}
	}
}

func prefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func key(name string) discovery.ServiceKey {
	return discovery.ServiceKey{Namespace: "demo", Name: name}
}

type ipMap = map[discovery.ServiceKey][]string

func TestAssign(t *testing.T) {
	echo, cart := key("echo"), key("cart")
	for _, tc := range []struct {
		name           string
		cidrs          []string
		keys           []discovery.ServiceKey
		held, reserved ipMap
		want           ipMap
		problems       int
	}{
		{
			name: "hash of namespace/name",
			keys: []discovery.ServiceKey{echo, cart},
			want: ipMap{echo: {"240.240.153.168"}, cart: {"240.240.15.230"}},
		},
		{
			name: "held IP kept",
			keys: []discovery.ServiceKey{echo},
			held: ipMap{echo: {"240.240.0.7"}},
			want: ipMap{echo: {"240.240.0.7"}},
		},
		{
			name: "most common held IP wins, then the lowest",
			keys: []discovery.ServiceKey{echo, cart},
			held: ipMap{echo: {"240.240.0.9", "240.240.0.8", "240.240.0.9"}, cart: {"240.240.1.2", "240.240.1.1"}},
			want: ipMap{echo: {"240.240.0.9"}, cart: {"240.240.1.1"}},
		},
		{
			name: "held IP outside the range, or its network address, replaced",
			keys: []discovery.ServiceKey{echo, cart},
			held: ipMap{echo: {"10.0.0.1"}, cart: {"240.240.0.0"}},
			want: ipMap{echo: {"240.240.153.168"}, cart: {"240.240.15.230"}},
		},
		{
			name: "two services hold one IP: the first in order keeps it",
			keys: []discovery.ServiceKey{echo, cart},
			held: ipMap{echo: {"240.240.0.5"}, cart: {"240.240.0.5"}},
			want: ipMap{cart: {"240.240.0.5"}, echo: {"240.240.153.168"}},
		},
		{
			name:     "reserved IPs are skipped by the probe",
			keys:     []discovery.ServiceKey{echo},
			reserved: ipMap{key("legacy"): {"240.240.153.168", "240.240.153.169"}},
			want:     ipMap{echo: {"240.240.153.170"}},
		},
		{
			// Both hash to .2; cart sorts first, echo wraps around to .1.
			name:  "the probe wraps around the end of the range",
			cidrs: []string{"240.240.0.0/30"},
			keys:  []discovery.ServiceKey{echo, cart},
			want:  ipMap{echo: {"240.240.0.1"}, cart: {"240.240.0.2"}},
		},
		{
			name:     "range exhausted",
			cidrs:    []string{"240.240.0.0/30"},
			keys:     []discovery.ServiceKey{echo, cart, key("web")},
			want:     ipMap{cart: {"240.240.0.2"}, echo: {"240.240.0.1"}},
			problems: 1,
		},
		{
			name:  "one IP per family",
			cidrs: []string{"240.240.0.0/16", "fd00:240::/108"},
			keys:  []discovery.ServiceKey{echo},
			held:  ipMap{echo: {"fd00:240::5"}},
			want:  ipMap{echo: {"240.240.153.168", "fd00:240::5"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := allocator(t, tc.cidrs)
			got, problems := a.Assign(tc.keys, tc.held, tc.reserved)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if len(problems) != tc.problems {
				t.Errorf("problems %v, want %d", problems, tc.problems)
			}
		})
	}
}

// TestAssignRemembers: an IP handed out in one round stays with its service
// in the next, even when no import shows it yet and a service that sorts
// first now hashes to the same address.
func TestAssignRemembers(t *testing.T) {
	const cidr = "240.240.0.0/30" // two addresses: collisions are easy
	first := func(k discovery.ServiceKey) string {
		got, _ := allocator(t, []string{cidr}).Assign([]discovery.ServiceKey{k}, nil, nil)
		return got[k][0]
	}
	late := key("zz")
	ip := first(late)
	var early discovery.ServiceKey
	for i := range 100 {
		if k := key(fmt.Sprintf("a%d", i)); first(k) == ip {
			early = k
			break
		}
	}
	if early.Name == "" {
		t.Fatal("no colliding name found")
	}
	a := allocator(t, []string{cidr})
	a.Assign([]discovery.ServiceKey{late}, nil, nil)
	got, _ := a.Assign([]discovery.ServiceKey{early, late}, nil, nil)
	if got[late][0] != ip || got[early][0] == ip {
		t.Fatalf("after %s joined: %v; %s had %s", early, got, late, ip)
	}
	// A fresh allocator (another replica) without the memory gives early
	// the hash slot: what the memory prevents.
	fresh, _ := allocator(t, []string{cidr}).Assign([]discovery.ServiceKey{early, late}, nil, nil)
	if fresh[early][0] != ip {
		t.Fatalf("test is not testing: fresh allocator gave %v", fresh)
	}
}
