package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/xds"
)

// view prints, without a server, the endpoints a proxy would be given: the
// quickest way to see split horizon at work on a ClusterSet file.
func view(args []string, stdout, stderr io.Writer) error {
	var path, host string
	p := &xds.Proxy{ID: "view"}
	var role string
	fs := flag.NewFlagSet("view", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&path, "clusterset", "", "ClusterSet YAML file (default: the embedded "+local.Name+")")
	fs.StringVar(&p.Cluster, "cluster", "", "the proxy's cluster (required)")
	fs.StringVar(&role, "role", "sidecar", "sidecar or proxyless")
	fs.StringVar(&p.Locality.Region, "region", "", "the proxy's region (default: its cluster's)")
	fs.StringVar(&p.Locality.Zone, "zone", "", "the proxy's zone")
	fs.StringVar(&host, "host", "", "only this host (e.g. echo.demo.svc.clusterset.local)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p.Role = xds.Role(role)
	name, data := local.Name, local.ClusterSet
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return err
		}
		name = path
	}
	cs, err := file.Parse(name, data)
	if err != nil {
		return err
	}
	if err := p.Resolve(cs); err != nil {
		return err
	}
	res, err := xds.Translate(cs, p.Group(), xds.Policy{})
	if err != nil {
		return err
	}
	if err := xds.Check(res, cs, p.Group()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "view %s (ClusterSet %s)\n", p.Group(), cs.Version())
	for _, cla := range res.Endpoints {
		h, port, err := discovery.ParseClusterName(cla.GetClusterName())
		if err != nil || (host != "" && h != host) {
			continue
		}
		fmt.Fprintf(stdout, "\n%s:%d\n", h, port)
		if len(cla.GetEndpoints()) == 0 {
			fmt.Fprintln(stdout, "  (no endpoints)")
		}
		for _, lle := range cla.GetEndpoints() {
			l := lle.GetLocality()
			for _, lb := range lle.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				fmt.Fprintf(stdout, "  priority %d  %-24s %-22s weight %-3d %s\n", lle.GetPriority(), l.GetRegion()+"/"+l.GetZone(),
					fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()), lb.GetLoadBalancingWeight().GetValue(), lb.GetHealthStatus())
			}
		}
	}
	for _, n := range res.Notes {
		if host == "" || strings.Contains(n, host) {
			fmt.Fprintf(stdout, "\nnote: %s", n)
		}
	}
	fmt.Fprintln(stdout)
	return nil
}
