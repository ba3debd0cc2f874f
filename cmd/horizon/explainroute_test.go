package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestExplainRoute: on the embedded example with examples/policy/routes.yaml,
// explain route names the rule a request takes, why the rules before it do
// not, and where its destinations lead in the source proxy's view (a remote
// cluster's share only through its network's gateway).
func TestExplainRoute(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string // in this order
	}{
		{"geo header from east-1", []string{"--host", "echo.demo.svc.clusterset.local:8080", "--header", "geo-location=us-west-2", "--from", "east-1"}, []string{
			"from a proxy in cluster east-1 (network east, locality us-east/us-east-1a)",
			`skip   rule testers (line 20): header x-user exact "tester" does not hold (header absent)`,
			`TAKE   rule geo-west (line 39): header geo-location prefix "us-west"`,
			"100%   outbound_.8080_.all.west-1_.echo.demo.svc.clusterset.local (demo/echo, cluster west-1's share)",
			"127.0.1.100:15443      weight 2   HEALTHY",
		}},
		{"tester, first match wins", []string{"--host", "echo.demo.svc.clusterset.local:8080", "--header", "x-user=tester", "--header", "geo-location=us-west-2", "--from", "west-1"}, []string{
			`TAKE   rule testers (line 20): header x-user exact "tester"`,
			"100%   outbound_.8080_.v2_.echo.demo.svc.clusterset.local (demo/echo, subset v2 {version=v2})",
			"127.0.1.3:8080", // west-1's own v2 pod, direct
			"127.0.0.100:15443",
			"with timeout 2s; 2 retries on connect-failure,unavailable; sets header x-routed-by: horizon; removes header x-debug",
		}},
		{"east proxy, 70/30", []string{"--host", "echo.demo.svc.clusterset.local:8080", "--from", "east-2"}, []string{
			"skip   rule geo-west (line 39)",
			"TAKE   rule east-split (line 47): from locality us-east/*",
			" 70%   outbound_.8080_.all.east-1_.echo.demo.svc.clusterset.local",
			" 30%   outbound_.8080_.all.west-1_.echo.demo.svc.clusterset.local",
		}},
		{"west proxy, no rule", []string{"--host", "echo.demo.svc.clusterset.local", "--from", "west-1"}, []string{
			"skip   rule east-split (line 47): from: the source proxy (cluster west-1, locality us-west/us-west-2a) is not selected",
			"no rule takes it: it goes to the whole service",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"route", "--policy", "../../examples/policy/routes.yaml"}, tc.args...)
			if err := explain(args, &out, &errb); err != nil {
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
	var out, errb bytes.Buffer
	if err := explain([]string{"route", "--host", "echo.demo.svc.clusterset.local", "--from", "east-1"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "no route rules for echo.demo.svc.clusterset.local") {
		t.Errorf("without a policy:\n%s", out.String())
	}
	if err := explain([]string{"route", "--host", "echo.demo.svc.clusterset.local", "--from", "north-9"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "north-9") {
		t.Errorf("unknown source cluster: %v", err)
	}
}

// TestViewSubsets: `horizon view --host` lists the subsets the host's route
// rules send to with the host, each with its endpoints in the view.
func TestViewSubsets(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"view", "--policy", "../../examples/policy/routes.yaml", "--cluster", "east-1", "--host", "echo.demo.svc.clusterset.local"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	for _, w := range []string{"echo.demo.svc.clusterset.local:8080\n", "echo.demo.svc.clusterset.local:8080 subset all.west-1\n", "echo.demo.svc.clusterset.local:8080 subset v2\n"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("missing %q:\n%s", w, out.String())
		}
	}
}
