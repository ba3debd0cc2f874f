package discovery

import (
	"testing"
	"time"
)

// TestServiceDigest: a service's digest in a cluster changes exactly when
// its content there, or the cluster's own attributes, change; the version
// changes with any of them.
func TestServiceDigest(t *testing.T) {
	type edit func(cs []Cluster)
	base := func() []Cluster {
		return []Cluster{
			{Name: "a", Network: "n1", Locality: Locality{Region: "r", Zone: "z"}, Gateways: []Gateway{{Address: "192.0.2.1", Port: 15443}}, Services: []Service{
				{Namespace: "d", Name: "s", Ports: []Port{{Name: "http", Port: 80}}, Endpoints: []Endpoint{
					{Address: "10.0.0.1", Ready: true, Labels: map[string]string{"app": "s", "v": "1"}, Ports: map[string]uint32{"http": 8080}},
				}},
				{Namespace: "d", Name: "t", Endpoints: []Endpoint{{Address: "10.0.0.2", Ready: true}}},
			}},
			{Name: "b", Network: "n2", Services: []Service{{Namespace: "d", Name: "s", Endpoints: []Endpoint{{Address: "10.1.0.1"}}}}},
		}
	}
	s, tt := ServiceKey{"d", "s"}, ServiceKey{"d", "t"}
	cases := []struct {
		name    string
		edit    edit
		changed map[string][]ServiceKey // cluster -> services whose digest must change
	}{
		{"nothing", func([]Cluster) {}, nil},
		{"endpoint address", func(c []Cluster) { c[0].Services[0].Endpoints[0].Address = "10.0.0.9" }, map[string][]ServiceKey{"a": {s}}},
		{"endpoint label", func(c []Cluster) { c[0].Services[0].Endpoints[0].Labels["v"] = "2" }, map[string][]ServiceKey{"a": {s}}},
		{"endpoint hostname", func(c []Cluster) { c[0].Services[0].Endpoints[0].Hostname = "web-0" }, map[string][]ServiceKey{"a": {s}}},
		{"endpoint port", func(c []Cluster) { c[0].Services[0].Endpoints[0].Ports["http"] = 9090 }, map[string][]ServiceKey{"a": {s}}},
		{"readiness elsewhere", func(c []Cluster) { c[1].Services[0].Endpoints[0].Ready = true }, map[string][]ServiceKey{"b": {s}}},
		{"export time", func(c []Cluster) { c[0].Services[1].ExportedAt = time.Unix(1, 2) }, map[string][]ServiceKey{"a": {tt}}},
		{"gateway", func(c []Cluster) { c[0].Gateways[0].Port = 15444 }, map[string][]ServiceKey{"a": {s, tt}}},
		{"locality", func(c []Cluster) { c[0].Locality.Zone = "z2" }, map[string][]ServiceKey{"a": {s, tt}}},
		{"stale", func(c []Cluster) { c[1].Stale = true }, map[string][]ServiceKey{"b": {s}}},
		// Length prefixes: moving a character from one field to the next is a change.
		{"field boundary", func(c []Cluster) { c[0].Locality = Locality{Region: "rz"} }, map[string][]ServiceKey{"a": {s, tt}}},
	}
	ref, err := New(base())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clusters := base()
			tc.edit(clusters)
			cs, err := New(clusters)
			if err != nil {
				t.Fatal(err)
			}
			if (cs.Version() != ref.Version()) != (len(tc.changed) > 0) {
				t.Errorf("version %s vs %s: want changed=%v", cs.Version(), ref.Version(), len(tc.changed) > 0)
			}
			for _, c := range ref.Clusters {
				for _, svc := range c.Services {
					want := false
					for _, k := range tc.changed[c.Name] {
						want = want || k == svc.Key()
					}
					d0, _ := ref.ServiceDigest(c.Name, svc.Key())
					d1, ok := cs.ServiceDigest(c.Name, svc.Key())
					if !ok {
						t.Fatalf("no digest for %s in %s", svc.Key(), c.Name)
					}
					if (d0 != d1) != want {
						t.Errorf("%s in %s: digest changed=%v, want %v", svc.Key(), c.Name, d0 != d1, want)
					}
				}
			}
		})
	}
	if _, ok := ref.ServiceDigest("a", ServiceKey{"d", "nope"}); ok {
		t.Error("a digest for a service the cluster does not define")
	}
}
