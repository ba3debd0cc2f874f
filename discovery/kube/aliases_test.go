package kube

import (
	"reflect"
	"testing"

	"github.com/horizonmesh/horizon/discovery"
)

// TestDropAliasConflicts: an alias two services claim across members stays
// with the service whose key sorts first; the other's claim is dropped and
// reported, the same service may claim it in every member, and the
// members' ClusterSet forms (discovery.New refuses it otherwise).
func TestDropAliasConflicts(t *testing.T) {
	svc := func(name string, aliases ...string) discovery.Service {
		return discovery.Service{Namespace: "prod", Name: name, Ports: []discovery.Port{{Port: 80}}, Aliases: aliases}
	}
	clusters := []discovery.Cluster{
		{Name: "east-1", Network: "east", Services: []discovery.Service{svc("users", "users.global", "api.example.com")}},
		{Name: "west-1", Network: "west", Services: []discovery.Service{svc("accounts", "users.global", "accounts.global"), svc("users", "users.global")}},
	}
	if _, err := discovery.New(cloneClusters(clusters)); err == nil {
		t.Fatal("discovery.New accepts an alias two services claim; the test proves nothing")
	}
	west := clusters[1].Services // the caller's list, which must not change
	got := DropAliasConflicts(clusters)
	want := []AliasConflict{{Alias: "users.global", Winner: discovery.ServiceKey{Namespace: "prod", Name: "accounts"},
		Loser: discovery.ServiceKey{Namespace: "prod", Name: "users"}, Cluster: "east-1"},
		{Alias: "users.global", Winner: discovery.ServiceKey{Namespace: "prod", Name: "accounts"},
			Loser: discovery.ServiceKey{Namespace: "prod", Name: "users"}, Cluster: "west-1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("conflicts %+v, want %+v", got, want)
	}
	if !reflect.DeepEqual(west[1].Aliases, []string{"users.global"}) {
		t.Errorf("the caller's service was modified in place: %v", west[1].Aliases)
	}
	for _, c := range clusters {
		for _, s := range c.Services {
			if want := []string(nil); s.Name == "users" {
				want = []string{"users.global"}
				if !reflect.DeepEqual(s.DroppedAliases, want) {
					t.Errorf("%s %s: dropped aliases %v, want %v", c.Name, s.Key(), s.DroppedAliases, want)
				}
			}
		}
	}
	cs, err := discovery.New(clusters)
	if err != nil {
		t.Fatal(err)
	}
	for alias, name := range map[string]string{"users.global": "accounts", "api.example.com": "users", "accounts.global": "accounts"} {
		if k, ok := cs.AliasOf(alias); !ok || k.Name != name {
			t.Errorf("AliasOf(%s) = %v, %v; want %s", alias, k, ok, name)
		}
	}
}

func cloneClusters(cs []discovery.Cluster) []discovery.Cluster {
	out := make([]discovery.Cluster, len(cs))
	for i := range cs {
		out[i] = cs[i].Clone()
	}
	return out
}
