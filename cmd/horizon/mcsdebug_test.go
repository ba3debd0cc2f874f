package main

import "testing"

func TestDefaultLeaseNamespace(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	if got := defaultLeaseNamespace(); got != "horizon-system" {
		t.Errorf("without POD_NAMESPACE: %q, want horizon-system", got)
	}
	t.Setenv("POD_NAMESPACE", "mesh")
	if got := defaultLeaseNamespace(); got != "mesh" {
		t.Errorf("with POD_NAMESPACE=mesh: %q", got)
	}
}
