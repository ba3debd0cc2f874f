package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/xds"
)

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// loadPolicy reads and checks a policy file against a ClusterSet's topology,
// as serve does before it listens (its watcher, on every reload, too): the
// one way view and explain read their --policy.
func loadPolicy(path string, cs *discovery.ClusterSet) (*policyfile.File, error) {
	pol, err := policyfile.Load(path, policyfile.TopologyOf(cs))
	if err != nil {
		return nil, fmt.Errorf("--policy: %w", err)
	}
	return pol, nil
}

// loadInputs reads what view and explain render from: the ClusterSet file
// (loadClusterSet); when workloads is not "", a workloads file's groups
// and VM networks merged into it as serve --workloads merges them (its
// declared instances; agents' registrations live only in a running
// server); and when policy is not "", the policy file checked against the
// result (loadPolicy).
func loadInputs(clusterSet, workloads, policy string) (*discovery.ClusterSet, xds.Policy, error) {
	cs, err := loadClusterSet(clusterSet)
	if err != nil {
		return nil, xds.Policy{}, err
	}
	if workloads != "" {
		w, err := file.LoadWorkloads(workloads)
		if err != nil {
			return nil, xds.Policy{}, fmt.Errorf("--workloads: %w", err)
		}
		if cs, err = cs.WithWorkloads(w.Clusters, w.WorkloadGroups, nil); err != nil {
			return nil, xds.Policy{}, fmt.Errorf("--workloads %s: %w", workloads, err)
		}
	}
	var pol xds.Policy
	if policy != "" {
		if pol.File, err = loadPolicy(policy, cs); err != nil {
			return nil, xds.Policy{}, err
		}
	}
	return cs, pol, nil
}

// loadClusterSet reads a ClusterSet file, or the embedded example for "",
// as serve does at start: how view and explain take --clusterset.
func loadClusterSet(path string) (*discovery.ClusterSet, error) {
	if path == "" {
		return file.Parse(local.Name, local.ClusterSet)
	}
	return file.Load(path)
}

// printClusterSet tells a new user, on one screen, what is being served.
func printClusterSet(w io.Writer, cs *discovery.ClusterSet, source string) {
	var b strings.Builder
	fmt.Fprintf(&b, "ClusterSet %s (version %s)\n", source, cs.Version())
	for _, network := range cs.Networks() {
		fmt.Fprintf(&b, "network %s\n", network)
		for _, c := range cs.Clusters {
			if c.Network != network {
				continue
			}
			gws := make([]string, 0, len(c.Gateways))
			for _, g := range c.Gateways {
				if g.ForNetwork != "" {
					gws = append(gws, g.String()+" (for network "+g.ForNetwork+")")
					continue
				}
				gws = append(gws, g.String())
			}
			gw := strings.Join(gws, ", ")
			if gw == "" {
				gw = "none (unreachable from other networks)"
			}
			loc := c.Locality.Region
			if c.Locality.Zone != "" {
				loc += "/" + c.Locality.Zone
			}
			fmt.Fprintf(&b, "  cluster %-12s %-28s gateway %s\n", c.Name, loc, gw)
			for _, s := range c.Services {
				ready := 0
				for _, e := range s.Endpoints {
					if e.Ready {
						ready++
					}
				}
				exported := "local"
				if s.Exported {
					exported = "exported"
				}
				fmt.Fprintf(&b, "    %-28s %-8s %d/%d endpoints ready\n", s.Key(), exported, ready, len(s.Endpoints))
			}
		}
	}
	fmt.Fprint(w, b.String())
}

func printKubeSummary(w io.Writer, k kubeConfig) {
	fmt.Fprintln(w, "Kubernetes member clusters (xDS is served once every one has synced or is served from its persisted state; see /debug/members)")
	for _, m := range k.members {
		fmt.Fprintf(w, "  %-12s network %-12s kubeconfig %s\n", m.name, m.network, m.kubeconfig)
	}
	if k.secretsNamespace != "" {
		fmt.Fprintf(w, "  and every member-cluster Secret in namespace %s\n", k.secretsNamespace)
	}
	switch {
	case k.stateDir != "":
		fmt.Fprintf(w, "  last known states in %s: a member not synced within %v is served from its state, marked stale\n", k.stateDir, k.syncWait)
	case k.stateNamespace != "":
		fmt.Fprintf(w, "  last known states in ConfigMaps horizon-state-<member> of namespace %s: a member not synced within %v is served from its state, marked stale\n", k.stateNamespace, k.syncWait)
	}
}

// dialable turns a listen address into one a local client can dial.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
