package pipeline

import (
	"slices"
	"testing"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/workload"
)

// withGroup is clusterSet with a workload group on west-1 declared.
func withGroup(t *testing.T) *discovery.ClusterSet {
	return clusterSet(t).Declare([]discovery.WorkloadGroup{{
		Namespace: "shop", Name: "vms", Service: "ratings", ServiceAccount: "ratings", Cluster: "west-1", Exported: true,
		Ports: []discovery.Port{{Name: "http", Port: 8080, Protocol: "TCP"}},
	}})
}

// vmAddresses lists the endpoints of shop/ratings in west-1.
func vmAddresses(cs *discovery.ClusterSet) []string {
	c, _ := cs.Cluster("west-1")
	s, ok := c.Service(discovery.ServiceKey{Namespace: "shop", Name: "ratings"})
	if !ok {
		return nil
	}
	var out []string
	for _, e := range s.Endpoints {
		out = append(out, e.Address)
	}
	return out
}

// TestWorkloadsStage: with the workloads stage, every stage after it sees
// the ClusterSet with the workload groups merged (Publish and Seed alike),
// and a registration republishes through the same stages.
func TestWorkloadsStage(t *testing.T) {
	tr := &trace{}
	views, pol := &fakeViews{t: tr}, &fakePolicy{t: tr}
	var observed []*discovery.ClusterSet
	reg := workload.New(workload.Options{})
	p := New(Config{Views: views, Policy: pol, Workloads: reg, Observers: []func(*discovery.ClusterSet){func(cs *discovery.ClusterSet) {
		tr.add("observer")
		observed = append(observed, cs)
	}}})
	if err := p.Seed(withGroup(t)); err != nil {
		t.Fatal(err)
	}
	if _, ok := views.got[0].Export(discovery.ServiceKey{Namespace: "shop", Name: "ratings"}); !ok {
		t.Fatal("the seeded views lack the group's service: the workloads stage did not merge")
	}
	p.Publish(withGroup(t))
	if _, err := reg.Join(discovery.ServiceKey{Namespace: "shop", Name: "vms"}, "10.2.0.5", nil, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"observer", "policy.SetTopology", "views.Apply", "observer", "policy.SetTopology", "views.Update", "observer", "policy.SetTopology", "views.Update"}
	if got := tr.get(); !slices.Equal(got, want) {
		t.Errorf("stages %v, want %v", got, want)
	}
	last := views.got[len(views.got)-1]
	if got := vmAddresses(last); !slices.Equal(got, []string{"10.2.0.5"}) {
		t.Errorf("the views' last ClusterSet has %v, want the joined VM", got)
	}
	if observed[len(observed)-1] != last {
		t.Error("the observers saw another ClusterSet than the views")
	}
}
