package discovery

import "testing"

// A ClusterSet with external services and workload groups keeps both
// through every derivation: merging registered workloads (the registry
// does, on every report) and withdrawing gateways (gateway health), with
// versions that still tell them apart.
func TestWorkloadsKeepExternalServices(t *testing.T) {
	base, err := New([]Cluster{{
		Name: "east-1", Network: "east", Gateways: []Gateway{{Address: "10.0.0.100", Port: 15443}},
		Services: []Service{{Namespace: "shop", Name: "ratings", Type: ClusterSetIP, Exported: true,
			Ports: []Port{{Name: "http", Port: 8080, Protocol: "TCP"}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ext := []ExternalService{{Host: "api.example.com", Ports: []Port{{Name: "https", Port: 443, Protocol: "TCP"}},
		Resolution: ResolveStatic, Endpoints: []ExternalEndpoint{{Address: "192.0.2.10", Port: 443}}}}
	withExt, err := base.WithExternal(ext)
	if err != nil {
		t.Fatal(err)
	}
	group := WorkloadGroup{Namespace: "shop", Name: "ratings-vms", Service: "ratings", ServiceAccount: "ratings", Cluster: "east-1",
		Exported: true, GracePeriod: DefaultGracePeriod}
	merged, err := withExt.WithWorkloads(nil, []WorkloadGroup{group}, []WorkloadInstance{{Group: group.Key(), Address: "10.0.5.5", Ready: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := merged.ExternalService("api.example.com"); !ok {
		t.Fatal("merging workloads dropped the external services")
	}
	plain, err := base.WithWorkloads(nil, []WorkloadGroup{group}, []WorkloadInstance{{Group: group.Key(), Address: "10.0.5.5", Ready: true}})
	if err != nil {
		t.Fatal(err)
	}
	if merged.Version() == plain.Version() {
		t.Error("a ClusterSet with an external service has the version of one without")
	}
	if len(merged.WorkloadGroups) != 1 {
		t.Fatalf("%d workload groups", len(merged.WorkloadGroups))
	}
	down := merged.WithoutGateways(func(Gateway) bool { return true })
	if _, ok := down.ExternalService("api.example.com"); !ok || len(down.WorkloadGroups) != 1 {
		t.Errorf("withdrawing gateways dropped external services (%v) or workload groups (%d)", ok, len(down.WorkloadGroups))
	}
}
