package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRefusesInsecureMember: a --member kubeconfig with
// insecure-skip-tls-verify stops `horizon serve` with an error naming the
// member and the opt-in; --allow-kubeconfig-insecure-tls (test clusters)
// reaches the loader and accepts it.
func TestServeRefusesInsecureMember(t *testing.T) {
	kc := filepath.Join("..", "..", "discovery", "kube", "testdata", "kubeconfig", "insecure.yaml")
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"serve", "--xds-address", "127.0.0.1:0", "--member", "name=east,network=net-east,kubeconfig=" + kc}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--member east") || !strings.Contains(err.Error(), "--allow-kubeconfig-insecure-tls") {
		t.Fatalf("serve with an insecure member: %v, want a refusal naming the member and the flag", err)
	}

	var k kubeConfig
	if err := k.members.Set("name=east,network=net-east,kubeconfig=" + kc); err != nil {
		t.Fatal(err)
	}
	cmd := newServeCommand()
	if err := cmd.Flags().Parse([]string{"--allow-kubeconfig-insecure-tls"}); err != nil {
		t.Fatal(err)
	}
	allowed, err := cmd.Flags().GetBool("allow-kubeconfig-insecure-tls")
	if err != nil || !allowed {
		t.Fatalf("flag: %v %v", allowed, err)
	}
	k.allowInsecureTLS = allowed
	cfgs, err := k.memberConfigs()
	if err != nil || len(cfgs) != 1 || !cfgs[0].Rest.Insecure {
		t.Fatalf("with the opt-in: %v, %+v", err, cfgs)
	}
}
