package nodetest

import (
	"os"
	"testing"
)

// The chains of nodes go, the host's own stay (KUBE-OLD was there before;
// MINE is not a node's name), and so do the rules of both.
func TestWithoutChains(t *testing.T) {
	save, err := os.ReadFile("testdata/filter-with-kubelet.save")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/filter-with-kubelet.want")
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]bool{"filter/INPUT": true, "filter/FORWARD": true, "filter/OUTPUT": true, "filter/KUBE-OLD": true, "filter/MINE": true}
	got, changed := withoutChains(string(save), "filter", before)
	if !changed || got != string(want) {
		t.Errorf("changed %v, got:\n%s\nwant:\n%s", changed, got, want)
	}
	before["filter/KUBE-FIREWALL"], before["filter/KUBE-KUBELET-CANARY"], before["filter/HZNT-ISO-west-east"] = true, true, true
	if got, changed := withoutChains(string(save), "filter", before); changed || got != string(save) {
		t.Errorf("nothing new, yet changed %v:\n%s", changed, got)
	}
}

func TestParseCRILog(t *testing.T) {
	in := "2026-12-07T09:30:48.1Z stdout F v0.0.0-nodetest\n" +
		"2026-12-07T09:30:48.2Z stderr P par\n" +
		"2026-12-07T09:30:48.3Z stderr F tial\n" +
		"2026-12-07T09:30:48.4Z stdout F \n"
	if got, want := parseCRILog([]byte(in)), "v0.0.0-nodetest\npartial\n\n"; got != want {
		t.Errorf("parseCRILog = %q, want %q", got, want)
	}
}
