package xds

import (
	"errors"
	"maps"
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
)

// FuzzResolveNode feeds ResolveNode, which turns the node of a proxy's first
// request into the identity and claims its view is rendered for, with any
// node a proxy can send (the fuzzed bytes are a wire-format core.Node).
// Properties: no panic; a refusal wraps ErrBadNode; an accepted node has
// a known cluster, the network of that cluster, a locality the ClusterSet
// knows (so proxies cannot make views without bound), DNS-label claims, a
// known role, and labels that keep Group.Labels unambiguous.
func FuzzResolveNode(f *testing.F) {
	cs := fixture.ClusterSet(f, "testdata/splithorizon.yaml")
	meta := func(kv ...string) *structpb.Struct {
		s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Fields[kv[i]] = structpb.NewStringValue(kv[i+1])
		}
		return s
	}
	labels, _ := structpb.NewStruct(map[string]any{"tier": "web", "app": "echo"})
	withLabels := meta(MetaClusterID, "west", MetaNamespace, "demo", MetaServiceAccount, "echo")
	withLabels.Fields[MetaLabels] = structpb.NewStructValue(labels)
	for _, n := range []*core.Node{
		{Id: "sidecar~10.0.1.1~echo.demo", Metadata: meta(MetaClusterID, "east-a", MetaNetwork, "east", MetaRole, "sidecar")},
		{Id: "gw", Metadata: meta(MetaClusterID, "west", MetaRole, "gateway"), Locality: &core.Locality{Region: "us-west", Zone: "us-west-2b"}},
		{Id: "grpc", UserAgentName: "gRPC Go", Metadata: meta(MetaClusterID, "north"), Locality: &core.Locality{Region: "eu", Zone: "nowhere", SubZone: "x"}},
		{Id: "labels", Metadata: withLabels},
		{Id: "wrong-network", Metadata: meta(MetaClusterID, "east-b", MetaNetwork, "west")},
		{Id: "unknown", Metadata: meta(MetaClusterID, "mars", MetaRole, "router")},
	} {
		b, err := proto.Marshal(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var n core.Node
		if proto.Unmarshal(data, &n) != nil {
			return
		}
		p, err := ResolveNode(&n, cs)
		if err != nil {
			if !errors.Is(err, ErrBadNode) || p != nil {
				t.Fatalf("refusal %v (proxy %v): want an ErrBadNode and no proxy", err, p)
			}
			return
		}
		c, ok := cs.Cluster(p.Cluster)
		switch {
		case !ok:
			t.Fatalf("accepted cluster %q, not a member", p.Cluster)
		case p.Network != c.Network:
			t.Fatalf("network %q, cluster %s is on %q", p.Network, c.Name, c.Network)
		case cs.ClampLocality(c.Name, p.Locality) != p.Locality:
			t.Fatalf("locality %v is not one the ClusterSet knows in %s", p.Locality, c.Name)
		case p.ID != n.GetId() || p.ID == "":
			t.Fatalf("id %q, node %q", p.ID, n.GetId())
		}
		for _, v := range []string{p.Namespace, p.ServiceAccount} {
			if v != "" && !discovery.IsDNSLabel(v) {
				t.Fatalf("claim %q is not a DNS label", v)
			}
		}
		if p.Role != Sidecar && p.Role != Gateway && p.Role != Proxyless {
			t.Fatalf("role %q", p.Role)
		}
		keys := make([]string, 0, len(p.Labels))
		for k, v := range p.Labels {
			if k == "" || strings.ContainsAny(k, ",=") || !discovery.IsLabelValue(v) {
				t.Fatalf("label %q=%q", k, v)
			}
			keys = append(keys, k)
		}
		// Group.Labels lists exactly the labels asked for, and splits back.
		g := p.GroupFor(keys)
		if got := g.labels(); !maps.Equal(got, nonEmpty(p.Labels)) {
			t.Fatalf("group labels %q: %v, proxy's %v", g.Labels, got, p.Labels)
		}
	})
}

func nonEmpty(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v != "" {
			out[k] = v
		}
	}
	return out
}
