package policyfile

import (
	"testing"

	"github.com/horizonmesh/horizon/discovery"
)

// TestRankExplains: the explanation of a rank comes with the priority it
// explains, from the same comparison.
func TestRankExplains(t *testing.T) {
	loc := func(r, z string) discovery.Locality { return discovery.Locality{Region: r, Zone: z} }
	proxy := Attributes{Locality: loc("us-east", "a"), Cluster: "east-1", Network: "east", Labels: map[string]string{"version": "v1"}}
	failover := LocalityLB{Enabled: true, FailoverPriority: []Key{KeyRegion, KeyZone},
		Failover: []Failover{{From: "us-east", To: []string{"eu", "us-west"}}}}
	byLabel := LocalityLB{Enabled: true, FailoverPriority: []Key{KeyNetwork, "version", "tier"}}
	tests := []struct {
		name   string
		lb     LocalityLB
		ep     Attributes
		prio   int
		text   string
		brief  string
		agreed int
	}{
		{"builtin same zone", builtin().Locality, Attributes{Locality: loc("us-east", "a")}, 0,
			"agrees on region, zone", "same zone", 2},
		{"builtin same region", builtin().Locality, Attributes{Locality: loc("us-east", "b")}, 1,
			"agrees on region; differs on zone (b, not a)", "same region, other zone", 1},
		{"builtin elsewhere", builtin().Locality, Attributes{Locality: loc("us-west", "a")}, 2,
			"shares no key; differs on region (us-west, not us-east)", "other region (us-west)", 0},
		{"disabled", LocalityLB{}, Attributes{Locality: loc("eu", "x")}, 0,
			"locality load balancing off", "locality load balancing off", 0},
		{"failover first", failover, Attributes{Locality: loc("eu", "x")}, 2,
			"shares no key; differs on region (eu, not us-east); region eu is #1 in failover from us-east", "other region (eu)", 0},
		{"failover unlisted", failover, Attributes{Locality: loc("ap", "x")}, 4,
			"shares no key; differs on region (ap, not us-east); region ap is not in failover from us-east, so after those listed", "other region (ap)", 0},
		{"label agrees", byLabel, Attributes{Network: "east", Labels: map[string]string{"version": "v1", "tier": "web"}}, 1,
			"agrees on network, version; the proxy has no tier", "same version, other tier", 2},
		{"label missing on the endpoint", byLabel, Attributes{Network: "east"}, 2,
			"agrees on network; differs on version (none, not v1)", "same network, other version", 1},
	}
	for _, tt := range tests {
		r := tt.lb.Rank(proxy, tt.ep)
		if r.Priority != tt.prio || tt.lb.Priority(proxy, tt.ep) != tt.prio || r.Agreed != tt.agreed {
			t.Errorf("%s: priority %d (Priority %d), agreed %d; want %d, %d", tt.name, r.Priority, tt.lb.Priority(proxy, tt.ep), r.Agreed, tt.prio, tt.agreed)
		}
		if got := r.String(); got != tt.text {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.text)
		}
		if got := r.Brief(); got != tt.brief {
			t.Errorf("%s: brief %q, want %q", tt.name, got, tt.brief)
		}
		if got := tt.lb.Explain(proxy, tt.ep); got != tt.text {
			t.Errorf("%s: Explain %q, want the rank's %q (no distribute here)", tt.name, got, tt.text)
		}
	}
}

// TestExplainDistribute: with a distribute entry, an endpoint is in a share
// (priority 0), or after the shares with its rank; Describe says the same of
// the whole ranking.
func TestExplainDistribute(t *testing.T) {
	p := mustParse(t, "../../examples/policy/distribute.yaml")
	east := Attributes{Locality: discovery.Locality{Region: "us-east", Zone: "us-east-1a"}}
	greeter := p.LookupService(discovery.ServiceKey{Namespace: "demo", Name: "greeter"}).Locality
	in := Attributes{Locality: discovery.Locality{Region: "us-east", Zone: "us-east-1b"}}
	if got, want := greeter.Explain(east, in), "in distribute share us-east/us-east-1b/* (70%)"; got != want {
		t.Errorf("in a share: %q, want %q", got, want)
	}
	west := Attributes{Locality: discovery.Locality{Region: "us-west", Zone: "us-west-2a"}}
	if got, want := greeter.Explain(east, west), "no distribute share, so after the shares: shares no key; differs on region (us-west, not us-east); region us-west is #1 in failover from us-east"; got != want {
		t.Errorf("after the shares: %q, want %q", got, want)
	}
	d, _ := greeter.DistributeFor(east.Locality)
	if i := d.ShareOf(in.Locality); i < 0 || d.To[i].Weight != 70 {
		t.Errorf("ShareOf us-east-1b: %d", i)
	}
	if i := d.ShareOf(west.Locality); i != -1 {
		t.Errorf("ShareOf us-west: %d, want -1", i)
	}
	if got, want := greeter.Describe(east.Locality), "distribute from us-east/*: us-east/us-east-1a/* 30%, us-east/us-east-1b/* 70% in priority 0; every other locality after them, failoverPriority [region zone], then regions [us-west]"; got != want {
		t.Errorf("Describe greeter:\n got %q\nwant %q", got, want)
	}
	echo := p.LookupService(discovery.ServiceKey{Namespace: "demo", Name: "echo"}).Locality
	if got, want := echo.Describe(east.Locality), "distribute from us-east/*: us-east/us-east-1a/* 60%, us-east/us-east-1b/* 20%, us-west/* 20% in priority 0; no other locality (no failover or failoverPriority next to distribute)"; got != want {
		t.Errorf("Describe echo:\n got %q\nwant %q", got, want)
	}
	if got, want := (LocalityLB{}).Describe(east.Locality), "locality load balancing off, one priority"; got != want {
		t.Errorf("Describe disabled: %q", got)
	}
}
