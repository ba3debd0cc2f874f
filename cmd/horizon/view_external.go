package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/xds"
)

// viewDNSTimeout bounds each lookup `horizon view` makes of an external
// service's name for a proxyless view.
const viewDNSTimeout = 2 * time.Second

// externalView is what `horizon view` prints of one port of an external
// service the view reaches: where its endpoints come from, and who
// resolves them. A sidecar's cluster carries them inline (Envoy resolves
// DNS names itself), so they are not among the view's assignments; a
// proxyless client's are (Horizon resolves them), and the notes say what
// it does not get.
type externalView struct {
	Host       string   `json:"host"`
	Port       uint32   `json:"port"`
	Source     string   `json:"source"`
	Resolution string   `json:"resolution"`
	Endpoints  []string `json:"endpoints"`
	ResolvedBy string   `json:"resolvedBy"`
	TLS        string   `json:"tls,omitempty"`
	Health     string   `json:"healthCheck,omitempty"`
}

// externalViews lists the external services' ports the rendered view
// reaches (those with a cluster in res), host filtering as view's --host.
func externalViews(cs *discovery.ClusterSet, g xds.Group, res *xds.Resources, host string) []externalView {
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range res.Clusters {
		clusters[c.GetName()] = c
	}
	var out []externalView
	for i := range cs.External {
		e := &cs.External[i]
		if host != "" && e.Host != host {
			continue
		}
		for _, p := range e.Ports {
			if clusters[discovery.ClusterName(e.Host, p.Port)] == nil {
				continue // not reachable from the view's network (a note says so)
			}
			v := externalView{Host: e.Host, Port: p.Port, Resolution: string(e.Resolution), Source: "ClusterSet file externalServices"}
			if e.Line > 0 {
				v.Source += fmt.Sprintf(" (line %d)", e.Line)
			}
			for _, ep := range e.Endpoints {
				port := ep.Port
				if port == 0 {
					port = p.Port
				}
				addr := net.JoinHostPort(ep.Address, strconv.Itoa(int(port)))
				if addrs := e.Resolved[ep.Address]; g.Role == xds.Proxyless && len(addrs) > 0 {
					addr += " = " + strings.Join(addrs, ", ")
				}
				v.Endpoints = append(v.Endpoints, addr)
			}
			switch {
			case e.Resolution == discovery.ResolveStatic:
				v.ResolvedBy = "nobody (IP addresses)"
			case g.Role == xds.Proxyless:
				v.ResolvedBy = "Horizon, served as EDS endpoints"
			default:
				v.ResolvedBy = "Envoy (" + e.Resolution.String() + " cluster)"
			}
			if e.TLS != nil {
				v.TLS = "originated by the sidecar, SNI " + e.TLS.SNI + ", CA " + e.TLS.CAFile
				if g.Role == xds.Proxyless {
					v.TLS = "not sent to proxyless gRPC: the client's own channel credentials apply"
				}
			}
			if hc := e.HealthCheck; hc != nil {
				v.Health = fmt.Sprintf("%s every %v (timeout %v, healthy after %d, unhealthy after %d)", hc.Protocol, hc.Interval, hc.Timeout, hc.HealthyThreshold, hc.UnhealthyThreshold)
				if hc.Protocol == discovery.HealthCheckHTTP {
					v.Health = "http GET " + hc.Path + strings.TrimPrefix(v.Health, "http")
				}
				if g.Role == xds.Proxyless {
					v.Health = "not sent to proxyless gRPC (grpc-go has no active health checks)"
				}
			}
			out = append(out, v)
		}
	}
	return out
}

// text writes one external service's port for a reader.
func (v externalView) text(b *strings.Builder) {
	fmt.Fprintf(b, "\nexternal %s:%d  (%s, %s)\n", v.Host, v.Port, v.Source, v.Resolution)
	for _, ep := range v.Endpoints {
		fmt.Fprintf(b, "    %s\n", ep)
	}
	fmt.Fprintf(b, "  resolved by %s\n", v.ResolvedBy)
	if v.TLS != "" {
		fmt.Fprintf(b, "  TLS: %s\n", v.TLS)
	}
	if v.Health != "" {
		fmt.Fprintf(b, "  health check: %s\n", v.Health)
	}
}
