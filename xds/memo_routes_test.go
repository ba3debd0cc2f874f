package xds

import (
	"slices"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/policyfile"
)

// routeDestClusterSet has echo on HTTP port 8080 and db on port 8080 too,
// but TCP: db's cluster on that port is in a view, yet not among the HTTP
// hosts of the port's route configuration.
const routeDestClusterSet = `
networks: [east]
clusters:
  - name: east-1
    network: east
    locality: {region: us-east, zone: us-east-1a}
    services:
      - name: echo
        namespace: demo
        clusterIP: 10.96.0.10
        ports: [{name: http, port: 8080, appProtocol: http}]
        endpoints: [{address: 10.0.1.1, serviceAccount: echo}]
      - name: db
        namespace: demo
        clusterIP: 10.96.0.11
        ports: [{name: tcp, port: 8080}]
        endpoints: [{address: 10.0.1.2, serviceAccount: db}]
`

// routeDestPolicy sends half of echo's requests to db.
const routeDestPolicy = `
routes:
  - host: echo.demo.svc.cluster.local
    rules:
      - name: half
        match: {path: {prefix: /}}
        to:
          - {weight: 50}
          - {service: demo/db, weight: 50}
`

// TestIncrementalRouteDestinations: a sidecar's route configuration of a
// port is remembered between renders (it used to be rendered again on
// every pass as soon as one host on the port had route rules), and a
// change to what its rules read beyond the port's own hosts — whether a
// destination is in the view at all — renders it again, exactly as a
// fresh render does.
func TestIncrementalRouteDestinations(t *testing.T) {
	cs, err := file.Parse("routes.yaml", []byte(routeDestClusterSet))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policyfile.Parse("policy.yaml", []byte(routeDestPolicy), policyfile.TopologyOf(cs))
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{File: pol}
	for _, role := range []Role{Sidecar, Proxyless} {
		t.Run(string(role), func(t *testing.T) {
			g := Group{Role: role, Cluster: "east-1", Network: "east", Locality: discovery.Locality{Region: "us-east", Zone: "us-east-1a"}}
			_, memo, err := translate(cs, g, p, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The same ClusterSet again: every route configuration is reused.
			again, memo2, err := translate(cs, g, p, memo)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range again.Routes {
				if !memo2.reused[r] {
					t.Fatalf("route configuration %s rendered again with nothing changed", r.GetName())
				}
			}

			// db goes: the rule's share to it is left out, as a fresh render does.
			clusters := slices.Clone(cs.Clusters)
			clusters[0].Services = slices.DeleteFunc(slices.Clone(clusters[0].Services), func(s discovery.Service) bool { return s.Name == "db" })
			next, err := discovery.New(clusters)
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := Translate(next, g, p)
			if err != nil {
				t.Fatal(err)
			}
			inc, _, err := translate(next, g, p, memo2)
			if err != nil {
				t.Fatal(err)
			}
			if d := diffResources(fresh, inc); d != "" {
				t.Fatalf("after db left the view, the incremental render differs: %s", d)
			}
			if !slices.ContainsFunc(inc.Notes, func(n string) bool { return strings.Contains(n, "route destination demo/db has no port 8080") }) {
				t.Fatalf("no note says the share to db is left out: %q", inc.Notes)
			}
		})
	}
}
