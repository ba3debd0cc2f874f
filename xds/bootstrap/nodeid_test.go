package bootstrap

import (
	"bytes"
	"errors"
	"testing"
)

// TestDefaultNodeID: where each part of the default node id comes from.
func TestDefaultNodeID(t *testing.T) {
	p := Proxy{Role: "gateway", Namespace: "horizon-system", Cluster: "west-1"}
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
			h := Host{
				Getenv:   func(k string) string { return tt.env[k] },
				Hostname: func() (string, error) { return tt.hostname, nil },
				Random:   fixed,
			}
			got, err := DefaultNodeID(p, h)
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	bad := Host{Getenv: func(k string) string { return map[string]string{"POD_NAME": "x", "POD_IP": "10.0.0"}[k] }}
	if id, err := DefaultNodeID(p, bad); err == nil {
		t.Errorf("POD_IP=10.0.0 accepted: %q", id)
	}
	noName := Host{Getenv: func(string) string { return "" }, Hostname: func() (string, error) { return "", errors.New("no uts") }}
	if id, err := DefaultNodeID(p, noName); err == nil {
		t.Errorf("no name at all accepted: %q", id)
	}
}
