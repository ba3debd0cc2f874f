package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestExplainFailover: on the embedded example, each endpoint of echo sits
// at the level its locality and network give it, with the reason.
func TestExplainFailover(t *testing.T) {
	for _, tc := range []struct {
		from string
		want []string // in this order
	}{
		{"us-east/us-east-1a", []string{
			"in cluster east-1 (network east)",
			"priority 0 (used first)",
			"127.0.0.2:7070         weight 1   HEALTHY   pod in cluster east-1, same network: same zone",
			"priority 1",
			"127.0.0.12:7070        weight 1   HEALTHY   pod in cluster east-2, same network: same region, other zone",
			"priority 2",
			"127.0.1.100:15443      weight 2   HEALTHY   gateway of network west (clusters west-1)",
			// What the MCS EndpointSlices in east-1 list, and what split
			// horizon leaves out of them.
			"MCS EndpointSlices in cluster east-1 (what kube-proxy and CoreDNS see there): 5 endpoints of network east; left out by split horizon, reachable only through the east-west gateways: 3 of cluster west-1 (network west)",
		}},
		{"us-west", []string{
			"in cluster west-1 (network west)",
			"priority 0 (used first)",
			"pod in cluster west-1, same network",
			"priority 1",
			"gateway of network east (clusters east-1, east-2)",
			"MCS EndpointSlices in cluster west-1 (what kube-proxy and CoreDNS see there): 3 endpoints of network west; left out by split horizon",
		}},
	} {
		t.Run(tc.from, func(t *testing.T) {
			var out, errb bytes.Buffer
			if err := explain([]string{"failover", "--service", "echo.demo.svc.clusterset.local:7070", "--from", tc.from}, &out, &errb); err != nil {
				t.Fatalf("%v\n%s", err, errb.String())
			}
			rest := out.String()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("missing or out of order: %q\n%s", w, out.String())
				}
				rest = rest[i+len(w):]
			}
		})
	}
	// With a policy file: distribute's weights on the localities.
	var out, errb bytes.Buffer
	if err := explain([]string{"failover", "--service", "echo.demo.svc.clusterset.local:7070", "--from", "us-east/us-east-1a",
		"--policy", "../../examples/policy/distribute.yaml"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	for _, w := range []string{"distribute from us-east/*", "locality us-east/us-east-1a, weight 60", "locality us-east/us-east-1b, weight 20", "locality us-west/us-west-2a, weight 20"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("missing %q:\n%s", w, out.String())
		}
	}
	// distribute and failover in one rule: the shares in priority 0, the
	// failover region after them, each with its reason; and what happens to
	// not-ready endpoints, for Envoy and for gRPC.
	out.Reset()
	if err := explain([]string{"failover", "--service", "greeter.demo.svc.clusterset.local", "--from", "us-east/us-east-1a",
		"--policy", "../../examples/policy/distribute.yaml"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	for _, w := range []string{
		"us-east/us-east-1b/* 70% in priority 0; every other locality after them, failoverPriority [region zone], then regions [us-west]",
		"not ready: kept as UNHEALTHY: Envoy moves a priority's load to the next one gradually",
		"priority 0 (used first)", "locality us-east/us-east-1b, weight 70", "in distribute share us-east/us-east-1b/* (70%)",
		"priority 1", "127.0.1.100:15443", "no distribute share, so after the shares", "region us-west is #1 in failover from us-east",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("missing %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	if err := explain([]string{"failover", "--service", "greeter.demo.svc.clusterset.local", "--from", "us-east/us-east-1a", "--role", "proxyless"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if w := "gRPC ignores UNHEALTHY endpoints and fails over per priority"; !strings.Contains(out.String(), w) {
		t.Errorf("missing %q:\n%s", w, out.String())
	}
	// A policy's own keys are the reasons.
	out.Reset()
	if err := explain([]string{"failover", "--service", "echo.demo.svc.clusterset.local:7070", "--from", "us-east/us-east-1a",
		"--policy", "../../examples/policy/failover.yaml"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	for _, w := range []string{"failoverPriority [network cluster version]",
		"127.0.0.12:7070        weight 1   HEALTHY   pod in cluster east-2, same network: agrees on network; differs on cluster (east-2, not east-1)",
		"gateway of network west (clusters west-1)", "differs on network (west, not east)"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("missing %q:\n%s", w, out.String())
		}
	}
	for _, args := range [][]string{
		{"failover", "--service", "echo.demo.svc.clusterset.local:7070", "--from", "mars"},
		{"failover", "--service", "nope.demo.svc.clusterset.local", "--from", "us-east"},
		{"failover", "--from", "us-east"},
		{"route"},
	} {
		if err := explain(args, &out, &errb); err == nil {
			t.Errorf("explain %q: no error", args)
		}
	}
}
