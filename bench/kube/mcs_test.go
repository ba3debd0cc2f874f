package kube

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/bench/load"
	"github.com/horizonmesh/horizon/discovery/kube/dnstest"
)

// coreDNS starts a real CoreDNS (dnstest) for tb's test or benchmark.
func coreDNS(tb testing.TB) StartDNS {
	return func(cfg *rest.Config) (Resolver, error) { return dnstest.Start(tb, cfg, dnstest.Options{}), nil }
}

// TestMCSSmoke runs the MCS scenario tiny through three real member
// clusters and a real CoreDNS, and checks correctness only: every change
// reached every member's MCS slice and CoreDNS's answer, with one slice
// write per importing member. Nothing here asserts a time.
func TestMCSSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three kube-apiservers and CoreDNS")
	}
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // after CoreDNS's cleanup
	sc := MCSScenario{Clusters: 3, Services: 3, Endpoints: 4, Changes: 6, DNSChanges: 3, Timeout: 20 * time.Second}
	r, err := RunMCS(t.Context(), sc, coreDNS(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := sc.Changes + sc.DNSChanges
	if r.Slice.N != n*sc.Clusters || r.LastMember.N != n || r.Missing != 0 {
		t.Errorf("MCS slices seen for %d (change, member) and %d whole changes, %d missing; want %d, %d, 0", r.Slice.N, r.LastMember.N, r.Missing, n*sc.Clusters, n)
	}
	if r.DNSInitial != sc.Clusters*sc.Endpoints || r.DNS.N != sc.DNSChanges || r.DNSSlice.N != sc.DNSChanges {
		t.Errorf("CoreDNS answered %d records first, then %d of %d changes (%d slices seen in its member); want %d records", r.DNSInitial, r.DNS.N, sc.DNSChanges, r.DNSSlice.N, sc.Clusters*sc.Endpoints)
	}
	// One source slice changed: its MCS slice in each of the K members.
	if k := float64(sc.Clusters); r.SliceWrites != k || r.SliceEvents != k || r.FailedWrites != 0 {
		t.Errorf("per change: %v slice writes, %v slice events, %v failed; want %v, %v, 0", r.SliceWrites, r.SliceEvents, r.FailedWrites, k, k)
	}
	for i, c := range r.Changes {
		if i >= sc.Changes && c.Service.Name != "svc-0" {
			t.Errorf("DNS change %d of %s, want the headless svc-0", i, c.Service)
		}
	}
	var buf bytes.Buffer
	if err := WriteMCSTable(&buf, load.Machine(), []*MCSResult{r}); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + buf.String())
	if out := buf.String(); !strings.HasPrefix(out, "Machine: nproc=") || strings.Count(out, "\n") != 5 {
		t.Errorf("table:\n%s", out)
	}
}

var (
	mcsChanges    = flag.Int("mcs.changes", 150, "BenchmarkMCS: endpoint changes over the services")
	mcsDNSChanges = flag.Int("mcs.dns-changes", 30, "BenchmarkMCS: changes of the headless service, each awaited in CoreDNS")
)

// BenchmarkMCS is the MCS scenario at its size: 3 members, 50
// exported services × 30 endpoints, one source endpoint changed at a time.
// Each iteration starts its own clusters (about a minute): run it with
// -benchtime 1x. It reports the table (bench/RESULTS.md) and the p50/p99
// as metrics.
func BenchmarkMCS(b *testing.B) {
	sc := MCSScenario{Clusters: 3, Services: 50, Endpoints: 30, Changes: *mcsChanges, DNSChanges: *mcsDNSChanges}
	var results []*MCSResult
	for b.Loop() {
		r, err := RunMCS(b.Context(), sc, coreDNS(b), nil)
		if err != nil {
			b.Fatal(err)
		}
		results = append(results, r)
	}
	var buf bytes.Buffer
	if err := WriteMCSTable(&buf, load.Machine(), results); err != nil {
		b.Fatal(err)
	}
	b.Log("\n" + buf.String())
	last := results[len(results)-1]
	b.ReportMetric(float64(last.Slice.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(last.Slice.P99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(last.DNS.P99.Microseconds())/1000, "dns-p99-ms")
	b.ReportMetric(last.SliceWrites, "slice-writes/change")
}
