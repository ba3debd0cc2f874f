package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/resolve"
	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/bootstrap"
)

// viewConfig is what `horizon view` is asked for.
type viewConfig struct {
	proxy                            bootstrap.Proxy // as `horizon bootstrap` takes it
	clusterSet, policy, host, output string
	workloads                        string // --workloads, as serve reads it
}

// run runs `horizon view`: it prints, without a server, the endpoints
// (EDS) a proxy would be sent: the quickest way to see split horizon and a
// failover policy at work on a ClusterSet file.
//
// It takes the inputs the server renders with, and takes them the server's
// way: the proxy's node is the one `horizon bootstrap` writes for the same
// flags, read and checked by xds.ResolveNode; the policy file is read and
// checked against the ClusterSet by loadPolicy, as `horizon serve --policy`
// does at start; the view is the node's group under that policy's label keys;
// and the resources are xds.Render's, what the server publishes.
// TestViewMatchesServer holds the output to what a running server sends.
//
// What view cannot know is the health of the east-west gateways: a server
// probing them (--gateway-probe-interval) withdraws those that are down.
func (cfg viewConfig) run(stdout, stderr io.Writer) error {
	switch cfg.output {
	case "text", "json", "yaml":
	default:
		return fmt.Errorf("view: --output %q: want text, json or yaml", cfg.output)
	}
	cs, policy, err := loadInputs(cfg.clusterSet, cfg.workloads, cfg.policy)
	if err != nil {
		return err
	}
	if policy.File != nil {
		for _, w := range policy.File.Warnings {
			fmt.Fprintf(stderr, "warning: %v\n", w)
		}
	}
	node, err := cfg.proxy.Node()
	if err != nil {
		return err
	}
	p, err := xds.ResolveNode(node, cs)
	if err != nil {
		return err
	}
	g := p.GroupFor(policy.LabelKeys())
	if g.Role == xds.Proxyless && len(cs.External) > 0 {
		// What the server's external DNS stage would serve proxyless
		// clients: the names resolved now, by this host's resolver.
		cs = resolve.Once(context.Background(), cs, resolve.Options{Timeout: viewDNSTimeout})
	}
	res, err := xds.Render(cs, g, policy)
	if err != nil {
		return err
	}
	if canonical, ok := cs.AliasHost(cfg.host, g.Cluster); ok {
		cfg.host = canonical // an alias: its host's endpoints
	}
	v := renderedView{group: g, clusterSet: cs.Version(), policy: policy, notes: res.Notes, sources: workloadSources(cs), external: externalViews(cs, g, res, cfg.host)}
	for _, cla := range res.Endpoints {
		// Subsets a route rule sends to (outbound_.PORT_.SUBSET_.HOST) are the host's too.
		if h, _, _, err := discovery.ParseSubsetClusterName(cla.GetClusterName()); cfg.host == "" || (err == nil && h == cfg.host) {
			v.endpoints = append(v.endpoints, cla)
		}
	}
	if cfg.host != "" {
		v.notes = nil
		for _, n := range res.Notes {
			if strings.Contains(n, cfg.host) {
				v.notes = append(v.notes, n)
			}
		}
	}
	if cfg.output == "text" {
		v.text(stdout)
		return nil
	}
	out, err := v.document()
	if err == nil && cfg.output == "yaml" {
		out, err = yaml.JSONToYAML(out)
	}
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// renderedView is what `horizon view` prints of a view.
type renderedView struct {
	group      xds.Group
	clusterSet string
	policy     xds.Policy
	endpoints  []*endpoint.ClusterLoadAssignment
	notes      []string
	// sources names the workload group of each VM endpoint (host:port),
	// which text shows after its health (workloads.go).
	sources  map[string]string
	external []externalView // view_external.go
}

// text writes the assignments for a reader: per service port, each
// priority and locality with its weight, then its endpoints with theirs and
// their health.
func (v renderedView) text(w io.Writer) {
	var b strings.Builder
	pol := "no policy file"
	if f := v.policy.File; f != nil {
		pol = fmt.Sprintf("policy %s %s", f.Name, f.Version)
	}
	fmt.Fprintf(&b, "view %s (ClusterSet %s, %s)\n", v.group, v.clusterSet, pol)
	for _, cla := range v.endpoints {
		if h, port, seg, err := discovery.ParseSubsetClusterName(cla.GetClusterName()); err == nil && seg == "" {
			fmt.Fprintf(&b, "\n%s:%d\n", h, port)
		} else if err == nil {
			fmt.Fprintf(&b, "\n%s:%d subset %s\n", h, port, seg)
		} else {
			fmt.Fprintf(&b, "\n%s\n", cla.GetClusterName())
		}
		if f := cla.GetPolicy().GetOverprovisioningFactor(); f != nil {
			fmt.Fprintf(&b, "  overprovisioning factor %d\n", f.GetValue())
		}
		if len(cla.GetEndpoints()) == 0 {
			fmt.Fprintln(&b, "  (no endpoints)")
		}
		for _, lle := range cla.GetEndpoints() {
			l := lle.GetLocality()
			loc := localityString(discovery.Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()})
			fmt.Fprintf(&b, "  priority %d  %-32s locality weight %d\n", lle.GetPriority(), loc, lle.GetLoadBalancingWeight().GetValue())
			for _, lb := range lle.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				addr := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
				fmt.Fprintf(&b, "    %-24s weight %-4d %s%s\n", addr, lb.GetLoadBalancingWeight().GetValue(), lb.GetHealthStatus(), v.sources[addr])
			}
		}
	}
	for _, x := range v.external {
		x.text(&b)
	}
	for _, n := range v.notes {
		fmt.Fprintf(&b, "\nnote: %s", n)
	}
	fmt.Fprintln(&b)
	fmt.Fprint(w, b.String())
}

// document is the view as JSON, shaped like /debug/config_dump's entry of a
// proxy: the assignments under their type URL, in protojson.
func (v renderedView) document() ([]byte, error) {
	notes := v.notes
	if notes == nil {
		notes = []string{}
	}
	doc := map[string]any{"view": v.group.String(), "clusterset": v.clusterSet, "notes": notes}
	if f := v.policy.File; f != nil {
		doc["policy"] = map[string]string{"file": f.Name, "version": f.Version}
	}
	list := []json.RawMessage{}
	for _, cla := range v.endpoints {
		b, err := protojson.Marshal(cla)
		if err != nil {
			return nil, err
		}
		list = append(list, b)
	}
	doc[resourcev3.EndpointType] = list
	if len(v.external) > 0 {
		doc["externalServices"] = v.external
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
