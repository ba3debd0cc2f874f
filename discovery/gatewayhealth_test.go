package discovery

import (
	"slices"
	"testing"
)

func gatewayTestClusters() []Cluster {
	gw := func(addr string) Gateway { return Gateway{Address: addr, Port: 15443} }
	echo := func() []Service {
		return []Service{{Namespace: "demo", Name: "echo", Exported: true,
			Ports:     []Port{{Name: "http", Port: 80}},
			Endpoints: []Endpoint{{Address: "10.1.0.1", Ready: true, MTLS: true}}}}
	}
	return []Cluster{
		{Name: "a", Network: "n1", Gateways: []Gateway{gw("192.0.2.1"), gw("192.0.2.2")}, Services: echo()},
		{Name: "b", Network: "n1", Gateways: []Gateway{gw("192.0.2.1")}, Services: echo()},
		{Name: "c", Network: "n2", Gateways: []Gateway{gw("198.51.100.1")}, Services: echo()},
	}
}

func TestWithoutGateways(t *testing.T) {
	cs, err := New(gatewayTestClusters())
	if err != nil {
		t.Fatal(err)
	}
	version := cs.Version()
	is := func(addrs ...string) func(Gateway) bool {
		return func(g Gateway) bool { return slices.Contains(addrs, g.Address) }
	}

	if got := cs.WithoutGateways(is("203.0.113.9")); got != cs {
		t.Error("withdrawing an unknown gateway did not return the ClusterSet itself")
	}

	// 192.0.2.1 serves clusters a and b: a keeps its second gateway, b has none.
	out := cs.WithoutGateways(is("192.0.2.1"))
	want := gatewayTestClusters()
	want[0].Gateways = want[0].Gateways[1:]
	want[1].Gateways = nil
	wantCS, err := New(want)
	if err != nil {
		t.Fatal(err)
	}
	if out.Version() == version {
		t.Error("withdrawing a gateway left the version as it was")
	}
	if out.Version() != wantCS.Version() {
		t.Errorf("version %s, want %s: the content hash of the same ClusterSet built by New", out.Version(), wantCS.Version())
	}
	for _, name := range []string{"a", "b", "c"} {
		got, ok := out.Cluster(name)
		w, _ := wantCS.Cluster(name)
		if !ok || !slices.Equal(got.Gateways, w.Gateways) {
			t.Errorf("cluster %s: gateways %v, want %v", name, got.Gateways, w.Gateways)
		}
	}
	if _, ok := out.Export(ServiceKey{"demo", "echo"}); !ok {
		t.Error("the export is gone")
	}
	if cs.Version() != version || len(cs.Clusters[0].Gateways) != 2 || len(cs.Clusters[1].Gateways) != 1 {
		t.Error("the input ClusterSet was modified")
	}

	// Every gateway down: still a valid ClusterSet, with its own version.
	none := cs.WithoutGateways(func(Gateway) bool { return true })
	for _, c := range none.Clusters {
		if len(c.Gateways) != 0 {
			t.Errorf("cluster %s keeps gateways %v", c.Name, c.Gateways)
		}
	}
	if none.Version() == version || none.Version() == out.Version() {
		t.Error("withdrawing every gateway did not give a version of its own")
	}
	if len(none.Networks()) != 2 || len(none.Exports) != 1 {
		t.Errorf("networks %v, exports %d", none.Networks(), len(none.Exports))
	}
}
