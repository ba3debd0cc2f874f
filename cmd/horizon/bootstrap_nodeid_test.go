package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// nodeIDOf runs `horizon bootstrap` without --id and returns the node id.
func nodeIDOf(t *testing.T, args ...string) string {
	t.Helper()
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(runBootstrap(t, args), &b); err != nil {
		t.Fatal(err)
	}
	return b.GetNode().GetId()
}

// TestBootstrapNodeIDUnique: without --id, every proxy gets its own node id,
// Horizon's only handle on one proxy (logs, /debug, horizon view). Two pods
// of one Deployment, the same StatefulSet pod name in two member clusters or
// two namespaces, and two proxies on one VM all differ.
func TestBootstrapNodeIDUnique(t *testing.T) {
	pod := func(name, ip, ns, cluster string) string {
		t.Setenv("POD_NAME", name)
		t.Setenv("POD_IP", ip)
		t.Setenv("POD_NAMESPACE", ns)
		return nodeIDOf(t, "--cluster", cluster, "--role", "sidecar")
	}
	ids := map[string]string{
		"pod a":           pod("echo-7d9c5-a1", "10.0.1.7", "demo", "east-1"),
		"pod b":           pod("echo-7d9c5-b2", "10.0.1.8", "demo", "east-1"),
		"db-0 in east-1":  pod("db-0", "10.0.1.9", "demo", "east-1"),
		"db-0 in west-1":  pod("db-0", "10.0.1.9", "demo", "west-1"),
		"db-0 in staging": pod("db-0", "10.0.1.10", "staging", "east-1"),
	}
	// Outside Kubernetes: no POD_NAME, one host name for every proxy on it.
	t.Setenv("POD_NAME", "")
	t.Setenv("POD_IP", "")
	t.Setenv("POD_NAMESPACE", "")
	t.Setenv("HOSTNAME", "vm")
	ids["vm proxy 1"] = nodeIDOf(t, "--cluster", "east-1", "--namespace", "demo")
	ids["vm proxy 2"] = nodeIDOf(t, "--cluster", "east-1", "--namespace", "demo")

	seen := map[string]string{}
	for who, id := range ids {
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share node id %q", who, other, id)
		}
		seen[id] = who
	}
	if id := ids["pod a"]; id != "sidecar~10.0.1.7~echo-7d9c5-a1.demo~east-1" {
		t.Errorf("pod a: node id %q, want sidecar~10.0.1.7~echo-7d9c5-a1.demo~east-1 (<role>~<pod IP>~<pod>.<namespace>~<cluster>)", id)
	}
	if id := ids["vm proxy 1"]; !strings.HasPrefix(id, "sidecar~~vm-") || !strings.HasSuffix(id, ".demo~east-1") {
		t.Errorf("vm proxy: node id %q, want sidecar~~vm-<random>.demo~east-1", id)
	}
}

// TestDefaultNodeID: where each part of the default node id comes from.
func TestDefaultNodeID(t *testing.T) {
	p := proxyIdentity{role: "gateway", namespace: "horizon-system", cluster: "west-1"}
	fixed := bytes.NewReader([]byte{0xde, 0xad, 0xbe, 0xef})
	for _, tt := range []struct {
		name     string
		env      map[string]string
		hostname string
		want     string
	}{
		{"pod", map[string]string{"POD_NAME": "eastwest-5f6b-x", "POD_IP": "10.1.0.4", "HOSTNAME": "node-3"}, "node-3", "gateway~10.1.0.4~eastwest-5f6b-x.horizon-system~west-1"},
		{"pod without POD_IP", map[string]string{"POD_NAME": "eastwest-5f6b-x"}, "node-3", "gateway~~eastwest-5f6b-x.horizon-system~west-1"},
		{"IPv6 pod", map[string]string{"POD_NAME": "eastwest-5f6b-x", "POD_IP": "fd00::4"}, "node-3", "gateway~fd00::4~eastwest-5f6b-x.horizon-system~west-1"},
		{"HOSTNAME", map[string]string{"HOSTNAME": "vm-a"}, "kernel-name", "gateway~~vm-a-deadbeef.horizon-system~west-1"},
		{"kernel host name", nil, "vm-b", "gateway~~vm-b-deadbeef.horizon-system~west-1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fixed.Reset([]byte{0xde, 0xad, 0xbe, 0xef})
			h := host{
				getenv:   func(k string) string { return tt.env[k] },
				hostname: func() (string, error) { return tt.hostname, nil },
				random:   fixed,
			}
			got, err := defaultNodeID(p, h)
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	bad := host{getenv: func(k string) string { return map[string]string{"POD_NAME": "x", "POD_IP": "10.0.0"}[k] }}
	if id, err := defaultNodeID(p, bad); err == nil {
		t.Errorf("POD_IP=10.0.0 accepted: %q", id)
	}
	noName := host{getenv: func(string) string { return "" }, hostname: func() (string, error) { return "", errors.New("no uts") }}
	if id, err := defaultNodeID(p, noName); err == nil {
		t.Errorf("no name at all accepted: %q", id)
	}
}
