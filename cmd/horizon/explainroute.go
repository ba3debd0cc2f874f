package main

import (
	"bytes"
	"errors"
	"net/http"

	"fmt"
	"github.com/spf13/cobra"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/xds"
)

// explainRouteConfig is what `horizon explain route` is asked for.
type explainRouteConfig struct {
	clusterSet, policy string
	workloads          string // --workloads, as serve reads it
	host, path, from   string
	locality           string
	headers            map[string]string
}

// run runs `horizon explain route`: which route rule of a host a request
// from a proxy of cluster from takes, why the rules before it do not, and
// where its destinations send it in that proxy's view.
func (cfg explainRouteConfig) run(stdout io.Writer) error {
	cs, pol, err := loadInputs(cfg.clusterSet, cfg.workloads, cfg.policy)
	if err != nil {
		return err
	}
	return explainRoute(stdout, cs, pol, cfg)
}

func newExplainRouteCommand() *cobra.Command {
	var cfg explainRouteConfig
	cmd := &cobra.Command{
		Use:     "route",
		Short:   "which route rule of a host a request takes, why, and where it goes",
		Example: `  horizon explain route --policy examples/policy/routes.yaml --host echo.demo.svc.clusterset.local:8080 --header geo-location=us-west-2 --from east-1`,
		Args:    noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "host", "from"); err != nil {
				return err
			}
			return cfg.run(cmd.OutOrStdout())
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.clusterSet, "clusterset", "", "ClusterSet YAML file (default: the embedded "+local.Name+")")
	fs.StringVar(&cfg.policy, "policy", "", "the policy file with the routes, as 'horizon serve --policy' reads it")
	fs.StringVar(&cfg.workloads, "workloads", "", "workloads file (groups of VMs and their networks) merged into the ClusterSet, as 'horizon serve --workloads' reads it: its declared instances")
	fs.StringVar(&cfg.host, "host", "", "the destination host, optionally with a port (required), e.g. echo.demo.svc.clusterset.local:8080")
	fs.StringVar(&cfg.path, "path", "/", "the request's path")
	fs.Var((*labelFlags)(&cfg.headers), "header", "a request header, name=value (repeatable)")
	fs.StringVar(&cfg.from, "from", "", "the source proxy's cluster (required)")
	fs.StringVar(&cfg.locality, "locality", "", "the source proxy's locality, REGION[/ZONE[/SUBZONE]] (default: its cluster's)")
	completeYAML(cmd, "clusterset", "policy", "workloads")
	return cmd
}

// explainRoute writes the rule a request takes and why.
func explainRoute(w io.Writer, cs *discovery.ClusterSet, policy xds.Policy, cfg explainRouteConfig) error {
	if cfg.host == "" || cfg.from == "" {
		return errors.New("explain route: the host and the source cluster are required")
	}
	host, port := cfg.host, uint32(0)
	if h, ps, err := net.SplitHostPort(cfg.host); err == nil {
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("--host %q: bad port", cfg.host)
		}
		host, port = h, uint32(n)
	}
	src, ok := cs.Cluster(cfg.from)
	if !ok {
		return fmt.Errorf("--from %q: no such cluster in the ClusterSet", cfg.from)
	}
	p := &xds.Proxy{ID: "explain", Cluster: src.Name, Role: xds.Sidecar, Locality: src.Locality}
	if cfg.locality != "" {
		l, err := parseLocality(cfg.locality)
		if err != nil {
			return err
		}
		p.Locality = l
	}
	if err := p.Resolve(cs); err != nil {
		return err
	}
	g := xds.NewViewKeys(cs, policy).Of(p.GroupFor(policy.LabelKeys()))
	path := cfg.path
	if path == "" {
		path = "/"
	}
	headers := map[string]string{}
	for k, v := range cfg.headers {
		headers[strings.ToLower(k)] = v
	}
	req := policyfile.Request{Path: path, Headers: headers, Cluster: g.Cluster, Locality: g.Locality}

	var hs []string
	for _, k := range slices.Sorted(maps.Keys(headers)) {
		hs = append(hs, k+"="+headers[k])
	}
	fmt.Fprintf(w, "request to %s, path %s, headers {%s}, from a proxy in cluster %s (network %s, locality %s)\n",
		cfg.host, path, strings.Join(hs, ", "), g.Cluster, g.Network, localityString(g.Locality))
	hr := policy.File.RoutesFor(host)
	if hr == nil {
		fmt.Fprintf(w, "no route rules for %s: every request goes to the whole service\n", host)
		return nil
	}
	fmt.Fprintf(w, "route rules of %s (%s line %d), first match wins:\n", host, policy.File.Name, hr.Line)
	i, why := hr.Select(req)
	for _, reason := range why {
		fmt.Fprintf(w, "  skip   %s\n", reason)
	}
	if i < 0 {
		fmt.Fprintf(w, "no rule takes it: it goes to the whole service, as without routes\n")
		return nil
	}
	r := &hr.Rules[i]
	fmt.Fprintf(w, "  TAKE   rule %s (line %d): %s\n", r.Name, r.Line, describeMatch(r))
	res, err := xds.Translate(cs, g, policy)
	if err != nil {
		return err
	}
	if port == 0 {
		port = lowestPort(res, host)
	}
	for _, d := range r.To {
		dhost := host
		if d.Service != hr.Service {
			dhost = discovery.Host(d.Service, hr.Scope)
		}
		name := discovery.SubsetClusterName(dhost, port, d.Subset)
		what := d.Service.String()
		if !d.Subset.IsZero() {
			what += ", " + d.Subset.String()
		}
		fmt.Fprintf(w, "  %3d%%   %s (%s)\n", d.Weight, name, what)
		found := false
		for _, cla := range res.Endpoints {
			if cla.GetClusterName() != name {
				continue
			}
			found = true
			for _, lle := range cla.GetEndpoints() {
				for _, lb := range lle.GetLbEndpoints() {
					sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
					fmt.Fprintf(w, "           %-22s weight %-3d %-9s priority %d\n",
						net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), lb.GetLoadBalancingWeight().GetValue(), lb.GetHealthStatus(), lle.GetPriority())
				}
			}
		}
		if !found {
			fmt.Fprintf(w, "           not in this view\n")
		}
	}
	var extra []string
	if r.Timeout > 0 {
		extra = append(extra, "timeout "+r.Timeout.String())
	}
	if r.Retries != nil {
		extra = append(extra, fmt.Sprintf("%d retries on %s", r.Retries.Attempts, strings.Join(r.Retries.RetryOn, ",")))
	}
	for _, h := range r.AddHeaders {
		extra = append(extra, "sets header "+h.Name+": "+h.Value)
	}
	for _, h := range r.RemoveHeaders {
		extra = append(extra, "removes header "+h)
	}
	if len(extra) > 0 {
		fmt.Fprintf(w, "  with %s\n", strings.Join(extra, "; "))
	}
	return nil
}

// explainRouteHandler answers /debug/explain/route?host=H[:PORT]&from=CLUSTER
// [&path=P][&header=k=v...][&locality=R/Z]: `horizon explain route` on the
// served ClusterSet and policy.
func explainRouteHandler(w http.ResponseWriter, r *http.Request, cs *discovery.ClusterSet, policy xds.Policy) {
	if cs == nil {
		http.Error(w, "no ClusterSet yet", http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	var headers labelFlags
	for _, kv := range q["header"] {
		if err := headers.Set(kv); err != nil {
			http.Error(w, "header "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	var b bytes.Buffer
	err := explainRoute(&b, cs, policy, explainRouteConfig{
		host: q.Get("host"), from: q.Get("from"), path: q.Get("path"), locality: q.Get("locality"), headers: headers,
	})
	if err != nil {
		http.Error(w, err.Error()+"\n(ask /debug/explain/route?host=HOST[:PORT]&from=CLUSTER[&path=P][&header=k=v...][&locality=R/Z])", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(b.Bytes())
}

// describeMatch says what a rule matches, in words.
func describeMatch(r *policyfile.RouteRule) string {
	var parts []string
	if len(r.From.Clusters) > 0 {
		parts = append(parts, "from cluster "+strings.Join(r.From.Clusters, ", "))
	}
	for _, l := range r.From.Localities {
		parts = append(parts, "from locality "+l.String())
	}
	if r.Path != nil {
		parts = append(parts, "path "+r.Path.String())
	}
	for i := range r.Headers {
		parts = append(parts, r.Headers[i].String())
	}
	if len(parts) == 0 {
		return "every request"
	}
	return strings.Join(parts, ", ")
}

// lowestPort returns the lowest port of the host among a view's clusters.
func lowestPort(res *xds.Resources, host string) uint32 {
	var best uint32
	for _, c := range res.Clusters {
		if h, p, err := discovery.ParseClusterName(c.GetName()); err == nil && h == host && (best == 0 || p < best) {
			best = p
		}
	}
	return best
}

// parseLocality reads REGION[/ZONE[/SUBZONE]].
func parseLocality(s string) (discovery.Locality, error) {
	parts := strings.Split(s, "/")
	if len(parts) > 3 || parts[0] == "" {
		return discovery.Locality{}, fmt.Errorf("--locality %q: want REGION[/ZONE[/SUBZONE]]", s)
	}
	parts = append(parts, "", "")
	return discovery.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}, nil
}
