package file

import (
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/discovery"
)

// checkWorkloadsFile checks testdata/valid/workloads.yaml: the groups'
// declared instances are endpoints of their service in their cluster,
// with the group's identity, labels and locality, marked with their source.
func checkWorkloadsFile(t *testing.T, cs *discovery.ClusterSet) {
	key := discovery.ServiceKey{Namespace: "shop", Name: "ratings"}
	vm := service(t, cluster(t, cs, "vm-west"), "shop", "ratings")
	equal(t, "vm service ports", vm.Ports, []discovery.Port{{Name: "http", Port: 8080, TargetPort: 8080, Protocol: "TCP"}})
	equal(t, "vm service exported", vm.Exported, true)
	loc := discovery.Locality{Region: "us-west", Zone: "us-west-2a"}
	src := discovery.WorkloadSource(discovery.ServiceKey{Namespace: "shop", Name: "ratings-vms"}, false)
	equal(t, "vm endpoints", vm.Endpoints, []discovery.Endpoint{
		{Address: "10.2.0.5", Locality: loc, Ready: true, Serving: true, ServiceAccount: "ratings", MTLS: true,
			Labels: map[string]string{"app": "ratings", "version": "vm", "host": "vm-5"}, Workload: src},
		{Address: "10.2.0.6", Locality: loc, ServiceAccount: "ratings", MTLS: true,
			Labels: map[string]string{"app": "ratings", "version": "vm"}, Workload: src},
	})
	east := service(t, cluster(t, cs, "east-1"), "shop", "ratings")
	var addrs []string
	for _, e := range east.Endpoints {
		addrs = append(addrs, e.Address+"="+e.Workload)
	}
	equal(t, "east endpoints", addrs, []string{"10.0.0.2=", "10.0.0.50=" + discovery.WorkloadSource(discovery.ServiceKey{Namespace: "shop", Name: "ratings-local"}, false)})
	exp, ok := cs.Export(key)
	if !ok {
		t.Fatal("shop/ratings not exported")
	}
	equal(t, "exporters", exp.Clusters, []string{"east-1", "vm-west"})
	g, ok := cs.WorkloadGroup(discovery.ServiceKey{Namespace: "shop", Name: "ratings-vms"})
	if !ok {
		t.Fatal("no group shop/ratings-vms")
	}
	equal(t, "probe", *g.Probe, discovery.Probe{Kind: discovery.ProbeHTTP, Port: 8080, Path: "/healthz",
		InitialDelay: time.Second, Interval: 2 * time.Second, Timeout: 500 * time.Millisecond, SuccessThreshold: 1, FailureThreshold: 2})
	equal(t, "grace", g.GracePeriod, 20*time.Second)
	equal(t, "groups", len(cs.WorkloadGroups), 2)
}

// TestWorkloadGroupVersion: a change to a group that changes no endpoint
// (its probe) still changes the version, so that a watcher publishes it.
func TestWorkloadGroupVersion(t *testing.T) {
	data := string(mustRead(t, "testdata/valid/workloads.yaml"))
	a, err := Parse("a", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b", []byte(strings.Replace(data, "interval: 2s", "interval: 3s", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if a.Version() == b.Version() {
		t.Errorf("a probe's interval changed, the version did not: %s", a.Version())
	}
}

// TestParseWorkloads: a workloads file names clusters it does not have
// (Kubernetes members); its groups are declared, not merged, until
// WithWorkloads joins them with a ClusterSet that has the cluster.
func TestParseWorkloads(t *testing.T) {
	wf, err := LoadWorkloads("testdata/workloads/members.yaml")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "clusters", len(wf.Clusters), 1)
	equal(t, "groups", len(wf.WorkloadGroups), 2)
	members := mustParse(t, "testdata/valid/minimal.yaml")
	cs, err := members.WithWorkloads(wf.Clusters, wf.WorkloadGroups, []discovery.WorkloadInstance{
		{Group: discovery.ServiceKey{Namespace: "shop", Name: "on-member"}, Address: "10.9.0.1", Ready: true},
	})
	if err == nil || !strings.Contains(err.Error(), `workload group shop/unknown: cluster "mars" is not in the ClusterSet`) {
		t.Errorf("err = %v, want the group on an unknown cluster left out", err)
	}
	s := service(t, cluster(t, cs, "solo"), "shop", "web")
	equal(t, "registered endpoint", len(s.Endpoints), 1)
	equal(t, "source", s.Endpoints[0].Workload, discovery.WorkloadSource(discovery.ServiceKey{Namespace: "shop", Name: "on-member"}, true))
	cluster(t, cs, "vm-net")
	// Merging again starts over: no endpoint is added twice.
	again, err2 := cs.WithWorkloads(nil, nil, nil)
	if err2 != nil {
		t.Fatal(err2)
	}
	equal(t, "endpoints after a merge without registrations", len(service(t, cluster(t, again, "solo"), "shop", "web").Endpoints), 0)

	if _, err := ParseWorkloads("bad", []byte("workloadGroups: [{name: x}]\n")); err == nil || !strings.Contains(err.Error(), "bad:1:18: workloadGroups[0]: missing required field") {
		t.Errorf("err = %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestParseWorkloadGroup: one group as the custom resource gives it;
// errors name the object and the spec's path.
func TestParseWorkloadGroup(t *testing.T) {
	g, err := ParseWorkloadGroup("WorkloadGroup shop/vms", []byte("{name: vms, namespace: shop, service: ratings, cluster: vm-net, ports: [{port: 80}], probe: {type: TCP, port: 80}}"))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "group", g.Probe.Kind, discovery.ProbeTCP)
	equal(t, "account", g.ServiceAccount, "default")
	_, err = ParseWorkloadGroup("WorkloadGroup shop/vms", []byte("{name: vms, namespace: shop, service: ratings, cluster: vm-net, probe: {type: UDP, port: 80}, hostname: x}"))
	want := "WorkloadGroup shop/vms: spec.probe.type: \"UDP\" is not HTTP, TCP or GRPC\nWorkloadGroup shop/vms: spec.hostname: unknown field \"hostname\""
	if err == nil || err.Error() != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}
}

// TestVMExamples: examples/vm parses: the workloads file, and the
// WorkloadGroup object's spec with the custom resource's checks.
func TestVMExamples(t *testing.T) {
	wf, err := LoadWorkloads("../../examples/vm/workloads.yaml")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "groups", len(wf.WorkloadGroups), 1)
	g := wf.WorkloadGroups[0]
	equal(t, "probe path", g.Probe.Path, "/health")
	equal(t, "instances", len(g.Instances), 1)
	// Served beside a member, the group's instance is an endpoint.
	cs, err := mustParse(t, "testdata/valid/minimal.yaml").WithWorkloads(wf.Clusters, wf.WorkloadGroups, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := service(t, cluster(t, cs, "vm-network"), "production", "user-service")
	equal(t, "endpoint", s.Endpoints[0].Address, "10.10.10.10")

	var obj struct {
		Metadata struct{ Name, Namespace string }
		Spec     map[string]any
	}
	if err := yaml.Unmarshal(mustRead(t, "../../examples/vm/workloadgroup.yaml"), &obj); err != nil {
		t.Fatal(err)
	}
	obj.Spec["name"], obj.Spec["namespace"] = obj.Metadata.Name, obj.Metadata.Namespace
	data, _ := yaml.Marshal(obj.Spec)
	crd, err := ParseWorkloadGroup("WorkloadGroup production/user-service-group", data)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "object's probe", *crd.Probe, *g.Probe)
	equal(t, "tokenReviewCluster", crd.TokenReviewCluster, g.TokenReviewCluster)
}
