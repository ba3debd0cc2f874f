package main

// The view tests: `horizon view` must print what the server sends. The
// ClusterSet and policies are testdata/view's; each policy is rendered for
// the proxies of viewProxies, by view and by `serve` run in-process.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/golden"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
)

// viewDir holds the view tests' ClusterSet, policies and goldens.
var viewDir = filepath.Join("testdata", "view")

// viewPolicies are the policy files of testdata/view the tests render with;
// "" is no policy file.
var viewPolicies = []string{"", "label.yaml", "distribute.yaml", "weights.yaml", "overprovisioning.yaml"}

// viewProxy is a proxy as both sides see it: view gets it as flags, the
// server as the node of an ADS stream.
type viewProxy struct {
	name                  string
	role, cluster         string
	region, zone, subZone string // all "" for none: the cluster's locality
	labels                map[string]string
}

var viewProxies = []viewProxy{
	{name: "east-1-web", role: "sidecar", cluster: "east-1", region: "us-east", zone: "us-east-1a", subZone: "rack-1", labels: map[string]string{"tier": "web"}},
	{name: "east-2-batch-proxyless", role: "proxyless", cluster: "east-2", region: "us-east", zone: "us-east-1b", labels: map[string]string{"tier": "batch", "app": "client"}},
	{name: "west-1", role: "sidecar", cluster: "west-1"},
	{name: "eu-1-gateway", role: "gateway", cluster: "eu-1"},
}

// args are the proxy's `horizon view` flags.
func (p viewProxy) args() []string {
	args := []string{"--role", p.role, "--cluster", p.cluster}
	for _, f := range [][2]string{{"--region", p.region}, {"--zone", p.zone}, {"--subzone", p.subZone}} {
		if f[1] != "" {
			args = append(args, f[0], f[1])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(p.labels)) {
		args = append(args, "--label", k+"="+p.labels[k])
	}
	return args
}

// node is the proxy's node as a bootstrap declares it, written here by hand
// rather than by view's code.
func (p viewProxy) node(t *testing.T) *core.Node {
	t.Helper()
	meta := map[string]any{"CLUSTER_ID": p.cluster, "NAMESPACE": "demo", "ROLE": p.role}
	if len(p.labels) > 0 {
		labels := map[string]any{}
		for k, v := range p.labels {
			labels[k] = v
		}
		meta["LABELS"] = labels
	}
	md, err := structpb.NewStruct(meta)
	if err != nil {
		t.Fatal(err)
	}
	n := &core.Node{Id: "view-test~" + p.name, Metadata: md}
	if p.region+p.zone+p.subZone != "" {
		n.Locality = &core.Locality{Region: p.region, Zone: p.zone, SubZone: p.subZone}
	}
	return n
}

func viewCaseName(policy string) string {
	if policy == "" {
		return "no-policy"
	}
	return strings.TrimSuffix(policy, ".yaml")
}

// viewArgs are view's flags for a policy and a proxy.
func viewArgs(policy string, p viewProxy) []string {
	args := []string{"--clusterset", filepath.Join(viewDir, "clusterset.yaml")}
	if policy != "" {
		args = append(args, "--policy", filepath.Join(viewDir, policy))
	}
	return append(args, p.args()...)
}

// viewAssignments runs `horizon view --output json` and reads the
// assignments it prints, by cluster name.
func viewAssignments(t *testing.T, args []string) map[string]*endpoint.ClusterLoadAssignment {
	t.Helper()
	var out, errb bytes.Buffer
	if err := view(append(args, "--output", "json"), &out, &errb); err != nil {
		t.Fatalf("horizon view %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("horizon view --output json: %v\n%s", err, out.String())
	}
	var list []json.RawMessage
	if err := json.Unmarshal(doc[resourcev3.EndpointType], &list); err != nil {
		t.Fatalf("horizon view --output json: %s: %v\n%s", resourcev3.EndpointType, err, out.String())
	}
	clas := map[string]*endpoint.ClusterLoadAssignment{}
	for _, raw := range list {
		cla := &endpoint.ClusterLoadAssignment{}
		if err := protojson.Unmarshal(raw, cla); err != nil {
			t.Fatalf("horizon view --output json: %v\n%s", err, raw)
		}
		clas[cla.GetClusterName()] = cla
	}
	return clas
}

// TestViewMatchesServer: for every policy of testdata/view and every proxy
// of viewProxies, the ClusterLoadAssignments `horizon view` prints are
// proto.Equal to those `horizon serve` (its own code, run in-process with
// the same ClusterSet file and policy file) sends over ADS to a proxy with
// that node, for every cluster of the proxy's CDS.
func TestViewMatchesServer(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, leaks)
		}
	})
	for _, policy := range viewPolicies {
		t.Run(viewCaseName(policy), func(t *testing.T) {
			flags := []string{"--clusterset", filepath.Join(viewDir, "clusterset.yaml")}
			if policy != "" {
				flags = append(flags, "--policy", filepath.Join(viewDir, policy))
			}
			addr := serveInProcess(t, flags...)
			for _, p := range viewProxies {
				t.Run(p.name, func(t *testing.T) {
					sent := adsAssignments(t, addr, p.node(t))
					printed := viewAssignments(t, viewArgs(policy, p))
					if len(sent) == 0 {
						t.Fatal("the server sent no assignment: nothing to compare")
					}
					for name, s := range sent {
						v, ok := printed[name]
						switch {
						case !ok:
							t.Errorf("%s: sent by the server, not printed by view", name)
						case !proto.Equal(v, s):
							t.Errorf("%s differs; first difference (view -, server +):\n%s", name, protoDiff(v, s))
						}
					}
					for name := range printed {
						if _, ok := sent[name]; !ok {
							t.Errorf("%s: printed by view, not sent by the server", name)
						}
					}
				})
			}
		})
	}
}

// protoDiff shows where two messages first differ: their multiline
// protojson from a few lines before that point, side by side.
func protoDiff(a, b proto.Message) string {
	format := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Format
	la, lb := strings.Split(format(a), "\n"), strings.Split(format(b), "\n")
	i := 0
	for i < len(la) && i < len(lb) && la[i] == lb[i] {
		i++
	}
	from := max(0, i-6)
	var out strings.Builder
	for j := from; j < i; j++ {
		fmt.Fprintf(&out, "  %s\n", la[j])
	}
	for j := i; j < min(i+6, len(la)); j++ {
		fmt.Fprintf(&out, "- %s\n", la[j])
	}
	for j := i; j < min(i+6, len(lb)); j++ {
		fmt.Fprintf(&out, "+ %s\n", lb[j])
	}
	return out.String()
}

// serveInProcess runs serve with flags, as `horizon serve` does, on loopback
// ports the kernel picks and without gateway probing (view cannot know a
// gateway's health). It returns the plaintext xDS address once serve
// listens, and stops serve when the test ends.
func serveInProcess(t *testing.T, flags ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &testkit.Buffer{}
	exited := make(chan struct{})
	var err error
	go func() {
		defer close(exited)
		err = serve(ctx, append([]string{"--xds-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
			"--gateway-probe-interval", "0", "--log-level", "warn"}, flags...), out, out)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
		if err != nil {
			t.Errorf("serve: %v\n%s", err, out)
		}
	})
	listening := regexp.MustCompile(`xDS \(ADS, plaintext, dev only\)\s+(\S+)`)
	var addr string
	testkit.Eventually(t, e2eWait, "serve listening", func() error {
		if m := listening.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			return nil
		}
		select {
		case <-exited:
			t.Fatalf("serve exited before it listened: %v\n%s", err, out)
		default:
		}
		return fmt.Errorf("its output so far:\n%s", out)
	})
	return addr
}

// adsAssignments opens an ADS stream (state of the world) to addr as node and
// does what Envoy does: it asks for every cluster, ACKs them, asks for the
// assignments of the EDS clusters and returns them by name.
func adsAssignments(t *testing.T, addr string, node *core.Node) map[string]*endpoint.ClusterLoadAssignment {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := xdstest.NewSotW(t, conn)
	defer c.Close()
	expect := func(typeURL string) *discoverypb.DiscoveryResponse {
		t.Helper()
		r := c.Expect()
		if r.GetTypeUrl() != typeURL {
			t.Fatalf("ADS stream of %s: got %s, want %s", node.GetId(), r.GetTypeUrl(), typeURL)
		}
		return r
	}

	c.Send(&discoverypb.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType})
	cds := expect(resourcev3.ClusterType)
	c.ACK(cds)
	var names []string
	for _, a := range cds.GetResources() {
		cl := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(cl); err != nil {
			t.Fatal(err)
		}
		if cl.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		name := cl.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = cl.GetName()
		}
		names = append(names, name)
	}
	slices.Sort(names)
	out := map[string]*endpoint.ClusterLoadAssignment{}
	if len(names) == 0 {
		return out
	}
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: names})
	eds := expect(resourcev3.EndpointType)
	for _, a := range eds.GetResources() {
		cla := &endpoint.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		out[cla.GetClusterName()] = cla
	}
	if got := slices.Sorted(maps.Keys(out)); !slices.Equal(got, names) {
		t.Fatalf("ADS stream of %s: asked for assignments %v, got %v", node.GetId(), names, got)
	}
	return out
}

// TestViewGolden locks view's text output for every policy and proxy of the
// comparison test: testdata/view/golden/<policy>.<proxy>.txt, rewritten with
// -update. TestViewMatchesServer holds the numbers to the server; this
// holds how they read.
func TestViewGolden(t *testing.T) {
	var files []string
	for _, policy := range viewPolicies {
		for _, p := range viewProxies {
			name := viewCaseName(policy) + "." + p.name
			file := filepath.Join(viewDir, "golden", name+".txt")
			files = append(files, file)
			t.Run(name, func(t *testing.T) {
				var out, errb bytes.Buffer
				if err := view(viewArgs(policy, p), &out, &errb); err != nil {
					t.Fatalf("%v\n%s", err, errb.String())
				}
				golden.Check(t, file, out.Bytes())
			})
		}
	}
	golden.Claimed(t, filepath.Join(viewDir, "golden", "*.txt"), files)
}

// TestViewRejectsWhatTheServerRejects: a policy file that does not fit the
// ClusterSet fails with serve's file:line errors, and node metadata the
// server refuses is refused with the server's message.
func TestViewRejectsWhatTheServerRejects(t *testing.T) {
	cs := filepath.Join(viewDir, "clusterset.yaml")
	bad := filepath.Join(viewDir, "invalid", "topology.yaml")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--cluster", "east-1", "--policy", bad}, []string{
			"--policy: " + bad + `:6:17: services[demo/echo].clusters.weights[east-3]: unknown cluster "east-3"`,
			bad + `:10:32: services[demo/echo].locality.failover[us-east].to[0]: unknown region "ap-south"`,
		}},
		{[]string{"--cluster", "east-1", "--zone", "us-east-1b"}, []string{"locality has a zone but no region"}},
		{[]string{"--cluster", "east-1", "--network", "west"}, []string{`NETWORK "west", but cluster "east-1" is on network "east"`}},
		{[]string{"--cluster", "mars-1"}, []string{`CLUSTER_ID "mars-1" is not a member of the ClusterSet`}},
		{[]string{"--cluster", "east-1", "--label", "tier=a,b"}, []string{`LABELS[tier]="a,b" is not a label value`}},
		{[]string{"--cluster", "east-1", "--role", "mesh"}, []string{`ROLE="mesh": want sidecar, gateway or proxyless`}},
		{[]string{"--cluster", "east-1", "--output", "xml"}, []string{`--output "xml": want text, json or yaml`}},
		{[]string{"--region", "us-east"}, []string{"--cluster is required"}},
	} {
		var out, errb bytes.Buffer
		err := view(append([]string{"--clusterset", cs}, tc.args...), &out, &errb)
		if err == nil {
			t.Errorf("view %q: no error; printed:\n%s", tc.args, out.String())
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("view %q: error %q\nlacks %q", tc.args, err, w)
			}
		}
	}
}

// TestViewOutputYAML: --output yaml is --output json's document.
func TestViewOutputYAML(t *testing.T) {
	args := viewArgs("label.yaml", viewProxies[0])
	var j, y, errb bytes.Buffer
	if err := view(append(args, "--output", "json"), &j, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if err := view(append(args, "--output", "yaml"), &y, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var fromJSON, fromYAML any
	if err := json.Unmarshal(j.Bytes(), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(y.Bytes(), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Errorf("yaml and json differ:\n%s\n%s", y.String(), j.String())
	}
}
