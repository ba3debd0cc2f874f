package policyfile

import (
	"reflect"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/discovery"
)

func TestLookupMerge(t *testing.T) {
	p := mustParse(t, "../../examples/policy/policy.yaml")
	echo := discovery.ServiceKey{Namespace: "demo", Name: "echo"}
	local := p.Lookup(echo, discovery.ClusterLocal)
	set := p.Lookup(echo, discovery.ClusterSetWide)
	other := p.Lookup(discovery.ServiceKey{Namespace: "data", Name: "cache"}, discovery.ClusterSetWide)

	if got, want := other.ConnectTimeout, 5*time.Second; got != want {
		t.Errorf("defaults connectTimeout = %v, want %v", got, want)
	}
	if !reflect.DeepEqual(other, p.Defaults) || !reflect.DeepEqual(p.LookupHost("example.com"), p.Defaults) {
		t.Errorf("a service without a rule does not get the defaults")
	}
	// The service rule: its own clusters and locality, the defaults' retries.
	if got := local.Clusters.Weight("east-1"); got != 3 {
		t.Errorf("echo weight east-1 = %d, want 3", got)
	}
	if local.Retries == nil || local.Retries.Attempts != 2 {
		t.Errorf("echo (cluster.local) retries = %+v, want the defaults' 2 attempts", local.Retries)
	}
	// The host rule: the service rule plus its own retries.
	if set.Retries == nil || set.Retries.Attempts != 3 || set.Retries.PerTryTimeout != 500*time.Millisecond {
		t.Errorf("echo (clusterset.local) retries = %+v, want 3 attempts of 500ms", set.Retries)
	}
	if !reflect.DeepEqual(set.Locality, local.Locality) || !reflect.DeepEqual(set.Clusters, local.Clusters) {
		t.Errorf("the host rule lost the service rule's locality or clusters")
	}
	if !reflect.DeepEqual(p.LookupHost("echo.demo.svc.clusterset.local"), set) {
		t.Errorf("LookupHost differs from Lookup")
	}
	greeter := p.LookupService(discovery.ServiceKey{Namespace: "demo", Name: "greeter"})
	if greeter.Clusters.Weight("east-1") != 0 || greeter.Clusters.Weight("east-2") != 1 {
		t.Errorf("greeter pin: weights %d %d", greeter.Clusters.Weight("east-1"), greeter.Clusters.Weight("east-2"))
	}
	legacy := p.LookupService(discovery.ServiceKey{Namespace: "demo", Name: "legacy"})
	if legacy.Retries != nil || legacy.OutlierDetection != nil {
		t.Errorf("legacy: retries %+v outlier %+v, want both off", legacy.Retries, legacy.OutlierDetection)
	}
	if od := p.Defaults.OutlierDetection; od == nil || od.MaxEjectionPercent != 50 || od.Consecutive5xxErrors != 5 {
		t.Errorf("defaults outlier = %+v", od)
	}
}

func TestBuiltinDefaults(t *testing.T) {
	p, err := Parse("p.yaml", []byte("services: []\n"), exampleTopology(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Defaults, builtin()) {
		t.Errorf("defaults = %+v, want built-in %+v", p.Defaults, builtin())
	}
}

func TestVersionIgnoresLayout(t *testing.T) {
	a, err := Parse("a", []byte("services: [{match: {service: demo/echo}, connectTimeout: 1s}]\n"), exampleTopology(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b", []byte("# comment\nservices:\n  - match: {service: demo/echo}\n    connectTimeout: 1000ms\n"), exampleTopology(t))
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != b.Version {
		t.Errorf("versions differ: %s %s", a.Version, b.Version)
	}
}

func TestPriority(t *testing.T) {
	loc := func(r, z string) discovery.Locality { return discovery.Locality{Region: r, Zone: z} }
	proxy := Attributes{Locality: loc("us-east", "a"), Cluster: "east-1", Network: "east", Labels: map[string]string{"version": "v1"}}
	tests := []struct {
		name string
		lb   LocalityLB
		ep   Attributes
		want int
	}{
		{"builtin same zone", builtin().Locality, Attributes{Locality: loc("us-east", "a")}, 0},
		{"builtin same region", builtin().Locality, Attributes{Locality: loc("us-east", "b")}, 1},
		{"builtin elsewhere", builtin().Locality, Attributes{Locality: loc("us-west", "a")}, 2},
		{"disabled", LocalityLB{}, Attributes{Locality: loc("eu", "x")}, 0},
		{"failover first", LocalityLB{Enabled: true, FailoverPriority: []Key{KeyRegion, KeyZone},
			Failover: []Failover{{From: "us-east", To: []string{"eu", "us-west"}}}}, Attributes{Locality: loc("eu", "x")}, 2},
		{"failover second", LocalityLB{Enabled: true, FailoverPriority: []Key{KeyRegion, KeyZone},
			Failover: []Failover{{From: "us-east", To: []string{"eu", "us-west"}}}}, Attributes{Locality: loc("us-west", "x")}, 3},
		{"failover unlisted", LocalityLB{Enabled: true, FailoverPriority: []Key{KeyRegion, KeyZone},
			Failover: []Failover{{From: "us-east", To: []string{"eu", "us-west"}}}}, Attributes{Locality: loc("ap", "x")}, 4},
		{"network, label match", LocalityLB{Enabled: true, FailoverPriority: []Key{KeyNetwork, "version"}},
			Attributes{Network: "east", Labels: map[string]string{"version": "v1"}}, 0},
		{"network only", LocalityLB{Enabled: true, FailoverPriority: []Key{KeyNetwork, "version"}},
			Attributes{Network: "east", Labels: map[string]string{"version": "v2"}}, 1},
		{"label without network", LocalityLB{Enabled: true, FailoverPriority: []Key{KeyNetwork, "version"}},
			Attributes{Network: "west", Labels: map[string]string{"version": "v1"}}, 2},
	}
	for _, tt := range tests {
		if got := tt.lb.Priority(proxy, tt.ep); got != tt.want {
			t.Errorf("%s: priority %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestDistributeFor(t *testing.T) {
	p := mustParse(t, "../../examples/policy/distribute.yaml")
	lb := p.LookupService(discovery.ServiceKey{Namespace: "demo", Name: "echo"}).Locality
	d, ok := lb.DistributeFor(discovery.Locality{Region: "us-east", Zone: "us-east-1c"})
	if !ok || d.From.String() != "us-east/us-east-1c/*" {
		t.Errorf("us-east-1c: %v %v, want the most specific from", d.From, ok)
	}
	d, ok = lb.DistributeFor(discovery.Locality{Region: "us-east", Zone: "us-east-1a"})
	if !ok || d.From.String() != "us-east/*" || len(d.To) != 3 {
		t.Errorf("us-east-1a: %+v %v", d, ok)
	}
	if _, ok := lb.DistributeFor(discovery.Locality{Region: "eu"}); ok {
		t.Errorf("eu matched a distribute entry")
	}
	east := discovery.Locality{Region: "us-east", Zone: "us-east-1a"}
	if lb.RanksUnshared(east) {
		t.Errorf("echo: distribute alone ranks the localities no share names; want them left out")
	}
	// greeter has distribute and failover in one block (once an error).
	g := p.LookupService(discovery.ServiceKey{Namespace: "demo", Name: "greeter"}).Locality
	if _, ok := g.DistributeFor(east); !ok || !g.RanksUnshared(east) {
		t.Errorf("greeter: us-east proxies should distribute and fail over past the shares")
	}
	if g.RanksUnshared(discovery.Locality{Region: "us-west"}) {
		t.Errorf("greeter: us-west has no failover entry and failoverPriority is not given")
	}
	withPrio := LocalityLB{Enabled: true, FailoverPriority: []Key{KeyRegion}, FailoverPriorityGiven: true}
	if !withPrio.RanksUnshared(discovery.Locality{Region: "eu"}) {
		t.Errorf("an explicit failoverPriority ranks past the shares")
	}
}
