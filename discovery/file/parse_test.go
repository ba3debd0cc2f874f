package file

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/internal/testkit/golden"
)

func parseFile(t *testing.T, path string) (*discovery.ClusterSet, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(path, data)
}

func mustParse(t *testing.T, path string) *discovery.ClusterSet {
	t.Helper()
	cs, err := parseFile(t, path)
	if err != nil {
		t.Fatalf("Parse(%s):\n%v", path, err)
	}
	return cs
}

func cluster(t *testing.T, cs *discovery.ClusterSet, name string) *discovery.Cluster {
	t.Helper()
	c, ok := cs.Cluster(name)
	if !ok {
		t.Fatalf("no cluster %q", name)
	}
	return c
}

func service(t *testing.T, c *discovery.Cluster, ns, name string) *discovery.Service {
	t.Helper()
	s, ok := c.Service(discovery.ServiceKey{Namespace: ns, Name: name})
	if !ok {
		t.Fatalf("cluster %s: no service %s/%s", c.Name, ns, name)
	}
	return s
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func TestParseValid(t *testing.T) {
	checks := map[string]func(t *testing.T, cs *discovery.ClusterSet){
		"empty.yaml": func(t *testing.T, cs *discovery.ClusterSet) {
			equal(t, "clusters", len(cs.Clusters), 0)
			equal(t, "exports", len(cs.Exports), 0)
		},
		"minimal.yaml": func(t *testing.T, cs *discovery.ClusterSet) {
			equal(t, "clusters", cs.Clusters, []discovery.Cluster{{Name: "solo", Network: "net1"}})
		},
		"defaults.yaml": func(t *testing.T, cs *discovery.ClusterSet) {
			c := cluster(t, cs, "c1")
			equal(t, "service", *service(t, c, "shop", "web"), discovery.Service{
				Namespace: "shop", Name: "web", Type: discovery.ClusterSetIP,
				Ports: []discovery.Port{{Port: 80, TargetPort: 80, Protocol: "TCP"}},
				Endpoints: []discovery.Endpoint{{
					Address:  "10.0.0.1",
					Locality: discovery.Locality{Region: "eu-west", Zone: "eu-west-1a", SubZone: "rack-7"},
					Ready:    true, Serving: true, ServiceAccount: "default", MTLS: true,
				}},
			})
			equal(t, "exports", len(cs.Exports), 0)
		},
		"overrides.yaml": func(t *testing.T, cs *discovery.ClusterSet) {
			var names []string
			for _, c := range cs.Clusters {
				names = append(names, c.Name)
			}
			equal(t, "cluster names", names, []string{"a-cluster", "b-cluster", "c-cluster"})
			equal(t, "networks", cs.Networks(), []string{"east", "west"})

			a := cluster(t, cs, "a-cluster")
			echo := service(t, a, "demo", "echo")
			equal(t, "echo clusterIP", echo.ClusterIP, "10.96.0.10")
			equal(t, "echo exported", echo.Exported, true)
			if want := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC); !echo.ExportedAt.Equal(want) {
				t.Errorf("echo exportedAt = %v, want %v", echo.ExportedAt, want)
			}
			equal(t, "echo ports", echo.Ports, []discovery.Port{
				{Name: "dns", Port: 53, TargetPort: 53, Protocol: "UDP"},
				{Name: "http", Port: 8080, TargetPort: 80, Protocol: "TCP", AppProtocol: "http"},
			})
			usEast := discovery.Locality{Region: "us-east"}
			equal(t, "echo endpoints", echo.Endpoints, []discovery.Endpoint{
				{Address: "10.0.0.1", Locality: usEast, Ready: true, ServiceAccount: "default", MTLS: true},
				{
					Address: "10.0.0.2", Ports: map[string]uint32{"http": 8081}, Locality: usEast,
					Terminating: true, ServiceAccount: "echo", Labels: map[string]string{"app": "echo", "version": "v2"},
				},
			})

			b := cluster(t, cs, "b-cluster")
			equal(t, "b gateways", b.Gateways, []discovery.Gateway{
				{Address: "192.0.2.1", Port: 443},
				{Address: "2001:db8::10", Port: 15443},
				{Address: "gw.west.example.com", Port: 15443},
			})
			db := service(t, b, "data", "db")
			equal(t, "db type", db.Type, discovery.Headless)
			if want := time.Date(2026, 3, 4, 4, 6, 7, 0, time.UTC); !db.ExportedAt.Equal(want) {
				t.Errorf("db exportedAt = %v, want %v", db.ExportedAt, want)
			}
			var addrs []string
			var localities []discovery.Locality
			for _, e := range db.Endpoints {
				addrs = append(addrs, e.Address)
				localities = append(localities, e.Locality)
			}
			equal(t, "db addresses", addrs, []string{"10.1.0.1", "10.1.0.2", "10.1.0.3", "2001:db8::1"})
			equal(t, "db localities", localities, []discovery.Locality{
				{Region: "us-west", Zone: "us-west-2b"},                    // zone: keeps the region, drops the subZone
				{Region: "us-west", Zone: "us-west-2a", SubZone: "rack-1"}, // subZone only
				{Region: "us-west", Zone: "us-west-2a", SubZone: "rack-0"}, // the cluster's
				{Region: "eu-central"},                                     // region: drops the zone and subZone
			})
			equal(t, "db service account", db.Endpoints[3].ServiceAccount, "db.primary")

			c := cluster(t, cs, "c-cluster")
			aliased := service(t, c, "demo", "echo")
			equal(t, "aliased echo locality", aliased.Endpoints[0].Locality, discovery.Locality{Region: "us-east", Zone: "us-east-1c"})
			equal(t, "aliased echo ports", aliased.Ports, echo.Ports)

			exp, ok := cs.Export(discovery.ServiceKey{Namespace: "demo", Name: "echo"})
			if !ok {
				t.Fatal("demo/echo not exported")
			}
			equal(t, "echo exporters", exp.Clusters, []string{"a-cluster", "c-cluster"})
			if _, ok := cs.Export(discovery.ServiceKey{Namespace: "demo", Name: "other"}); ok {
				t.Error("demo/other exported, want not")
			}
		},
		"workloads.yaml": checkWorkloadsFile, // workloads_test.go
		"order-a.yaml": func(t *testing.T, cs *discovery.ClusterSet) {
			equal(t, "version", cs.Version(), mustParse(t, "testdata/valid/order-b.yaml").Version())
		},
		"order-b.yaml": func(t *testing.T, cs *discovery.ClusterSet) {
			s := service(t, cluster(t, cs, "one"), "x", "a")
			equal(t, "labels", s.Endpoints[0].Labels, map[string]string{"k1": "v1", "k2": "v2"})
		},
	}
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid fixtures: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			cs := mustParse(t, path)
			if again := mustParse(t, path); again.Version() != cs.Version() {
				t.Errorf("version differs between two parses: %s, %s", cs.Version(), again.Version())
			}
			check, ok := checks[name]
			if !ok {
				t.Fatalf("no checks for %s in the table", name)
			}
			delete(checks, name)
			check(t, cs)
		})
	}
	for name := range checks {
		t.Errorf("table checks %s, which testdata/valid lacks", name)
	}
}

// errorLine is the one error format of both input files: file:line:col: path: message.
var errorLine = regexp.MustCompile(`^(.+?):(\d+):(\d+): \S`)

// TestParseInvalid parses each testdata/invalid/*.yaml and compares the error
// with the golden .err file next to it; -update rewrites those.
func TestParseInvalid(t *testing.T) {
	for _, path := range golden.Pairs(t, "testdata/invalid", ".yaml", ".err") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cs, err := parseFile(t, path)
			if err == nil {
				t.Fatalf("Parse succeeded with version %s, want an error", cs.Version())
			}
			got := err.Error() + "\n"
			golden.Check(t, strings.TrimSuffix(path, ".yaml")+".err", []byte(got))

			// Every line names the file and a line, in line order.
			last := 0
			for l := range strings.Lines(strings.TrimSuffix(got, "\n")) {
				m := errorLine.FindStringSubmatch(l)
				if m == nil || m[1] != path {
					t.Errorf("line %q: want %s:<line>:<col>: <message>", l, path)
					continue
				}
				n, _ := strconv.Atoi(m[2])
				if n < last {
					t.Errorf("line %q comes after line %d", l, last)
				}
				last = n
			}
			var first *Error
			if !errors.As(err, &first) || first.File != path || first.Line < 1 {
				t.Errorf("errors.As(*Error) = %+v, want the first error", first)
			}
		})
	}
}

// TestExample checks that the documented example parses, holds what it
// documents, and is what the binary embeds.
func TestExample(t *testing.T) {
	const path = "../../examples/local/clusterset.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, local.ClusterSet) {
		t.Errorf("%s differs from local.ClusterSet", path)
	}
	if !strings.HasSuffix(path, local.Name) {
		t.Errorf("local.Name = %q, want the suffix of %s", local.Name, path)
	}
	cs, err := Parse(local.Name, local.ClusterSet)
	if err != nil {
		t.Fatal(err)
	}

	equal(t, "networks", cs.Networks(), []string{"east", "west"})
	perNetwork := map[string]int{}
	var headless, unexported, noMTLS, draining int
	for _, c := range cs.Clusters {
		perNetwork[c.Network]++
		if len(c.Gateways) == 0 {
			t.Errorf("cluster %s has no gateway", c.Name)
		}
		for _, g := range c.Gateways {
			if !strings.HasPrefix(g.Address, "127.0.") {
				t.Errorf("cluster %s gateway %s is not a loopback address", c.Name, g)
			}
		}
		if c.Locality.Region == "" || c.Locality.Zone == "" {
			t.Errorf("cluster %s has no region and zone", c.Name)
		}
		for _, s := range c.Services {
			if s.Type == discovery.Headless {
				headless++
			}
			if !s.Exported {
				unexported++
			}
			for _, e := range s.Endpoints {
				if !strings.HasPrefix(e.Address, "127.0.0.") && !strings.HasPrefix(e.Address, "127.0.1.") {
					t.Errorf("cluster %s service %s endpoint %s is not in 127.0.0.x or 127.0.1.x", c.Name, s.Key(), e.Address)
				}
				if !e.MTLS {
					noMTLS++
				}
				if e.Draining() {
					draining++
				}
			}
		}
	}
	if perNetwork["east"] < 2 || perNetwork["west"] < 1 {
		t.Errorf("clusters per network = %v, want two sharing east and one on west", perNetwork)
	}
	for what, n := range map[string]int{"Headless services": headless, "unexported services": unexported, "endpoints without mTLS": noMTLS, "draining endpoints": draining} {
		if n == 0 {
			t.Errorf("no %s", what)
		}
	}
	for _, k := range []discovery.ServiceKey{{Namespace: "demo", Name: "echo"}, {Namespace: "demo", Name: "greeter"}} {
		exp, ok := cs.Export(k)
		if !ok || len(exp.Clusters) < 2 {
			t.Errorf("service %s: exported by %v, want several clusters", k, exp)
			continue
		}
		networks := map[string]bool{}
		for _, name := range exp.Clusters {
			networks[cluster(t, cs, name).Network] = true
		}
		if len(networks) < 2 {
			t.Errorf("service %s: exported on networks %v, want both", k, networks)
		}
		if len(exp.Conflicts) > 0 {
			t.Errorf("service %s: conflicts %v", k, exp.Conflicts)
		}
	}
}

// FuzzParse checks that Parse never panics, is deterministic, and that every
// error line it returns names the file and a line.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	seeds = append(seeds, "../../examples/local/clusterset.yaml")
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := Parse("fuzz.yaml", data)
		if err != nil {
			for l := range strings.Lines(err.Error()) {
				if m := errorLine.FindStringSubmatch(l); m == nil || m[1] != "fuzz.yaml" {
					t.Fatalf("error line %q: want fuzz.yaml:<line>:<col>: <message>", l)
				}
			}
			return
		}
		again, err := Parse("fuzz.yaml", data)
		if err != nil || again.Version() != cs.Version() {
			t.Fatalf("second parse: version %v, error %v; first: %s", again, err, cs.Version())
		}
	})
}
