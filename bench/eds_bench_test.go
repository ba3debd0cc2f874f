package bench_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/bench/gen"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/xds"
)

// shape is one benchmarked ClusterSet: endpoints per service (over the whole
// ClusterSet) × number of services.
type shape struct{ endpoints, services int }

func (s shape) String() string {
	return fmt.Sprintf("endpoints=%d/services=%d", s.endpoints, s.services)
}

var shapes = []shape{{1000, 1}, {100, 10}, {10, 100}, {1, 100}}

// Benchmarked topology: 4 networks of one cluster each, 2 gateways per
// cluster, one HTTP port per service.
const (
	networks           = 4
	clustersPerNetwork = 1
	gatewaysPerCluster = 2
)

func (s shape) spec() gen.Spec {
	return gen.Spec{
		Networks:            networks,
		ClustersPerNetwork:  clustersPerNetwork,
		Services:            s.services,
		EndpointsPerService: s.endpoints,
		GatewaysPerCluster:  gatewaysPerCluster,
	}
}

func generate(tb testing.TB, s shape) *discovery.ClusterSet {
	tb.Helper()
	cs, err := gen.Generate(s.spec())
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

// view is the group of a proxy of the given role in cluster n0-c0 (network
// net-0, in zone region-0a).
func view(role xds.Role) xds.Group {
	return xds.Group{Role: role, Cluster: gen.ClusterName(0, 0), Network: gen.NetworkName(0), Locality: gen.Locality(0, 0)}
}

var deterministic = proto.MarshalOptions{Deterministic: true}

func translate(tb testing.TB, cs *discovery.ClusterSet, g xds.Group) *xds.Resources {
	tb.Helper()
	res, err := xds.Translate(cs, g, xds.Policy{})
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// lbEndpoints counts the LbEndpoints of the assignments.
func lbEndpoints(clas []*endpoint.ClusterLoadAssignment) int {
	n := 0
	for _, cla := range clas {
		for _, l := range cla.GetEndpoints() {
			n += len(l.GetLbEndpoints())
		}
	}
	return n
}

// reportPerEndpoint reports the LbEndpoints rendered per op and the time per
// LbEndpoint.
func reportPerEndpoint(b *testing.B, rendered int) {
	b.ReportMetric(float64(rendered), "endpoints/op")
	if rendered > 0 && b.N > 0 {
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(ns/float64(rendered), "ns/endpoint")
	}
}

// BenchmarkEDS measures what a ClusterSet change costs one sidecar view's
// EDS: xds.Translate of the view (it renders every type: Translate is the
// only entry point), then the deterministic marshal of every
// ClusterLoadAssignment, as xds/entry.go does once per view.
func BenchmarkEDS(b *testing.B) {
	for _, s := range shapes {
		b.Run(s.String(), func(b *testing.B) {
			cs := generate(b, s)
			g := view(xds.Sidecar)
			var edsBytes, rendered int
			b.ReportAllocs()
			for b.Loop() {
				res, err := xds.Translate(cs, g, xds.Policy{})
				if err != nil {
					b.Fatal(err)
				}
				edsBytes = 0
				for _, cla := range res.Endpoints {
					buf, err := deterministic.Marshal(cla)
					if err != nil {
						b.Fatal(err)
					}
					edsBytes += len(buf)
				}
				rendered = lbEndpoints(res.Endpoints)
			}
			b.ReportMetric(float64(edsBytes), "eds-bytes/op")
			reportPerEndpoint(b, rendered)
		})
	}
}

var roles = []xds.Role{xds.Sidecar, xds.Proxyless}

// BenchmarkTranslate measures xds.Translate alone: building the view's
// messages, no marshalling.
func BenchmarkTranslate(b *testing.B) {
	for _, role := range roles {
		for _, s := range shapes {
			b.Run("role="+string(role)+"/"+s.String(), func(b *testing.B) {
				cs := generate(b, s)
				g := view(role)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := xds.Translate(cs, g, xds.Policy{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkTranslateView measures a whole view: xds.Translate, then, for every
// resource of every type, what xds/entry.go's newEntry does (deterministic
// marshal, sha256 of the bytes, hex version).
func BenchmarkTranslateView(b *testing.B) {
	for _, role := range roles {
		for _, s := range shapes {
			b.Run("role="+string(role)+"/"+s.String(), func(b *testing.B) {
				cs := generate(b, s)
				g := view(role)
				var viewBytes, edsBytes, resources int
				b.ReportAllocs()
				for b.Loop() {
					res, err := xds.Translate(cs, g, xds.Policy{})
					if err != nil {
						b.Fatal(err)
					}
					viewBytes, edsBytes, resources = 0, 0, 0
					for _, typeURL := range xds.TypeURLs {
						for _, r := range res.ByType(typeURL) {
							n, err := entry(r)
							if err != nil {
								b.Fatal(err)
							}
							viewBytes += n
							resources++
							if typeURL == xds.TypeURLs[1] {
								edsBytes += n
							}
						}
					}
				}
				b.ReportMetric(float64(viewBytes), "view-bytes/op")
				b.ReportMetric(float64(edsBytes), "eds-bytes/op")
				b.ReportMetric(float64(resources), "resources/op")
			})
		}
	}
}

// entry does the work of xds/entry.go's newEntry and returns the size of the
// marshalled resource.
func entry(r types.Resource) (int, error) {
	buf, err := deterministic.Marshal(r)
	if err != nil {
		return 0, err
	}
	sum := sha256.Sum256(buf)
	_ = hex.EncodeToString(sum[:12])
	return len(buf), nil
}

// vtMarshaler is the marshaller protoc-gen-go-vtproto generates into
// go-control-plane's envoy protos. Those files carry the build constraint
// "vtprotobuf", so the method exists only in builds with -tags vtprotobuf.
// go-control-plane generates the "strict" flavour only (MarshalVTStrict: no
// plain MarshalVT).
type vtMarshaler interface {
	MarshalVTStrict() ([]byte, error)
	SizeVT() int
}

// BenchmarkMarshalVT compares the marshallers on the ClusterLoadAssignments
// of a view: the protobuf-go reflection-based marshal (default and
// deterministic) and vtprotobuf's generated MarshalVTStrict (skipped unless
// built with -tags vtprotobuf). The proxyless view has the same endpoints as
// the sidecar view without the tlsMode metadata, which the sidecar's carry
// once per locality (per endpoint only where a locality mixes mesh and
// plaintext endpoints: xds hoistTLSMode).
func BenchmarkMarshalVT(b *testing.B) {
	marshallers := []struct {
		name    string
		marshal func(*endpoint.ClusterLoadAssignment) ([]byte, error)
	}{
		{"proto.Marshal", func(m *endpoint.ClusterLoadAssignment) ([]byte, error) { return proto.Marshal(m) }},
		{"proto.Deterministic", func(m *endpoint.ClusterLoadAssignment) ([]byte, error) { return deterministic.Marshal(m) }},
		{"MarshalVTStrict", func(m *endpoint.ClusterLoadAssignment) ([]byte, error) {
			return any(m).(vtMarshaler).MarshalVTStrict()
		}},
	}
	_, haveVT := any(&endpoint.ClusterLoadAssignment{}).(vtMarshaler)
	for _, s := range []shape{{1000, 1}, {10, 100}} {
		cs := generate(b, s)
		for _, role := range roles {
			res := translate(b, cs, view(role))
			clas, rendered := res.Endpoints, lbEndpoints(res.Endpoints)
			for _, m := range marshallers {
				b.Run("role="+string(role)+"/"+s.String()+"/marshal="+m.name, func(b *testing.B) {
					if m.name == "MarshalVTStrict" && !haveVT {
						b.Skip("vtprotobuf marshallers are compiled in only with -tags vtprotobuf")
					}
					var n int
					b.ReportAllocs()
					for b.Loop() {
						n = 0
						for _, cla := range clas {
							buf, err := m.marshal(cla)
							if err != nil {
								b.Fatal(err)
							}
							n += len(buf)
						}
					}
					b.ReportMetric(float64(n), "eds-bytes/op")
					reportPerEndpoint(b, rendered)
				})
			}
		}
	}
}

// TestShapes checks that the benchmarked views are what the benchmarks claim:
// every service reachable under both scopes, every ready endpoint accounted
// for (directly or behind a gateway), and byte-equal output for equal input.
func TestShapes(t *testing.T) {
	for _, s := range shapes {
		t.Run(s.String(), func(t *testing.T) {
			cs := generate(t, s)
			own, _ := cs.Cluster(gen.ClusterName(0, 0))
			for _, role := range roles {
				res := translate(t, cs, view(role))
				if got, want := len(res.Endpoints), 2*s.services; got != want {
					t.Fatalf("%s: %d assignments, want %d (one per service and scope)", role, got, want)
				}
				if len(res.Notes) != 0 {
					t.Errorf("%s: notes %q", role, res.Notes)
				}
				for _, cla := range res.Endpoints {
					host, _, err := discovery.ParseClusterName(cla.GetClusterName())
					if err != nil {
						t.Fatal(err)
					}
					key, scope, err := discovery.ParseHost(host)
					if err != nil {
						t.Fatal(err)
					}
					want := s.endpoints // clusterset.local: every endpoint, directly or as gateway weight
					if scope == discovery.ClusterLocal {
						svc, _ := own.Service(key)
						want = len(svc.Endpoints)
					}
					if got := weight(cla); got != want {
						t.Errorf("%s: %s: total weight %d, want %d", role, cla.GetClusterName(), got, want)
					}
				}
				again := translate(t, cs, view(role))
				for i, cla := range res.Endpoints {
					a, _ := deterministic.Marshal(cla)
					b, _ := deterministic.Marshal(again.Endpoints[i])
					if !bytes.Equal(a, b) {
						t.Errorf("%s: %s: two translations differ", role, cla.GetClusterName())
					}
				}
			}
		})
	}
}

func weight(cla *endpoint.ClusterLoadAssignment) int {
	n := 0
	for _, l := range cla.GetEndpoints() {
		sum := 0
		for _, e := range l.GetLbEndpoints() {
			sum += int(e.GetLoadBalancingWeight().GetValue())
		}
		if uint32(sum) != l.GetLoadBalancingWeight().GetValue() {
			return -1 // the locality's weight must be its endpoints' sum
		}
		n += sum
	}
	return n
}

// TestMarshalVTStrict checks, in builds with -tags vtprotobuf, that
// MarshalVTStrict encodes Horizon's assignments to the same messages as the
// deterministic proto marshal, with the same size, and records that the bytes
// differ: protobuf-go writes a oneof (LbEndpoint.endpoint, field 1) after the
// regular fields, vtprotobuf in field-number order. Both are valid encodings,
// but a resource version that hashes the bytes (xds/entry.go) changes with
// the marshaller.
//
// vtprotobuf also writes map entries in Go map order. The only maps in an
// assignment are metadata's filter_metadata and the Struct fields under it
// (on a locality, or an endpoint),
// which Horizon fills with one entry each, so the output is stable here; it
// would not be with two or more entries.
func TestMarshalVTStrict(t *testing.T) {
	if _, ok := any(&endpoint.ClusterLoadAssignment{}).(vtMarshaler); !ok {
		t.Skip("vtprotobuf marshallers are compiled in only with -tags vtprotobuf")
	}
	for _, s := range shapes {
		cs := generate(t, s)
		for _, role := range roles {
			var differ, total int
			for _, cla := range translate(t, cs, view(role)).Endpoints {
				want, err := deterministic.Marshal(cla)
				if err != nil {
					t.Fatal(err)
				}
				vt := any(cla).(vtMarshaler)
				got, err := vt.MarshalVTStrict()
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) || vt.SizeVT() != len(want) {
					t.Errorf("%s %s %s: vtproto size %d (SizeVT %d), proto %d", s, role, cla.GetClusterName(), len(got), vt.SizeVT(), len(want))
				}
				var back endpoint.ClusterLoadAssignment
				if err := proto.Unmarshal(got, &back); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(&back, cla) {
					t.Errorf("%s %s %s: MarshalVTStrict does not round-trip", s, role, cla.GetClusterName())
				}
				again, _ := vt.MarshalVTStrict()
				if !bytes.Equal(got, again) {
					t.Errorf("%s %s %s: MarshalVTStrict is not stable", s, role, cla.GetClusterName())
				}
				total++
				if !bytes.Equal(got, want) {
					differ++
				}
			}
			t.Logf("%s %s: %d of %d assignments marshal to different bytes with MarshalVTStrict", s, role, differ, total)
		}
	}
}
