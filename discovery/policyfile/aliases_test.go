package policyfile

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
)

func aliasTopology(t *testing.T) (*discovery.ClusterSet, Topology) {
	t.Helper()
	cs, err := file.Load("testdata/aliases/clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cs, TopologyOf(cs)
}

// TestMatchAlias: a rule matching an alias is the rule of the host the
// alias stands for: the clusterset.local host of an exported service, the
// cluster.local host of one that is not.
func TestMatchAlias(t *testing.T) {
	_, topo := aliasTopology(t)
	p, err := Load("testdata/aliases/policy.yaml", topo)
	if err != nil {
		t.Fatal(err)
	}
	users := discovery.ServiceKey{Namespace: "prod", Name: "users"}
	cart := discovery.ServiceKey{Namespace: "prod", Name: "cart"}
	for _, tc := range []struct {
		k     discovery.ServiceKey
		scope discovery.Scope
		want  time.Duration
	}{
		{users, discovery.ClusterSetWide, 3 * time.Second},
		{users, discovery.ClusterLocal, p.Defaults.ConnectTimeout},
		{cart, discovery.ClusterLocal, 4 * time.Second},
		{cart, discovery.ClusterSetWide, p.Defaults.ConnectTimeout},
	} {
		if got := p.Lookup(tc.k, tc.scope).ConnectTimeout; got != tc.want {
			t.Errorf("Lookup(%s, %v).ConnectTimeout = %v, want %v", tc.k, tc.scope, got, tc.want)
		}
	}
	var matches []string
	for _, r := range p.Rules {
		matches = append(matches, r.Match.String())
	}
	if !slices.Contains(matches, "users.api.example.com") {
		t.Errorf("rules match %q; want the alias as the file wrote it", matches)
	}
}

// TestMatchAliasErrors: an alias whose host has a rule already, and an
// alias no service claims, are errors at their lines.
func TestMatchAliasErrors(t *testing.T) {
	_, topo := aliasTopology(t)
	_, err := Load("testdata/aliases/twice.yaml", topo)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	for _, want := range []string{
		`twice.yaml:4:12: services[user-service.production.global].match: alias user-service.production.global stands for host users.prod.svc.clusterset.local, which has a rule already (at line 2)`,
		`twice.yaml:6:19: services[orders.api.example.com].match.host: "orders.api.example.com" is not a service host`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestTopologyCarriesAliases: a ClusterSet change that moves an alias (the
// service becomes exported) changes the topology, so the watcher checks
// the policy again.
func TestTopologyCarriesAliases(t *testing.T) {
	_, topo := aliasTopology(t)
	data, err := os.ReadFile("testdata/aliases/clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(data), "        aliases: [cart.global]", "        exported: true\n        aliases: [cart.global]", 1)
	cs, err := file.Parse("moved.yaml", []byte(moved))
	if err != nil {
		t.Fatal(err)
	}
	if TopologyOf(cs).Equal(topo) {
		t.Fatal("topology unchanged after cart.global moved to the clusterset.local host")
	}
	if got := TopologyOf(cs).Aliases["cart.global"]; got != "cart.prod.svc.clusterset.local" {
		t.Fatalf("cart.global stands for %q", got)
	}
}
