package main

// The policy end-to-end tests: the real horizon binary serves a ClusterSet
// file with a policy file (--policy) to grpc-go's xDS client, in us-east's
// zone us-east-1a, with one gRPC server in each of four localities in three
// regions, all on one network. The failover test checks the region order a
// policy configures; the distribute test checks the split of RPCs it
// configures.

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"text/template"
	"time"

	"go.uber.org/goleak"
)

const (
	// policyDistributeRPCs is how many RPCs the distribute test counts.
	policyDistributeRPCs = 2000
	// policyTolerance is how far, in percentage points, a measured share may
	// be from the configured one. grpc-go picks localities at random by
	// weight: over 2,000 RPCs a share's standard deviation is at most 1.1
	// points, so 5 points is more than four of them.
	policyTolerance = 5.0
)

// policyClusterSet fills testdata/policy/clusterset.yaml.tmpl.
type policyClusterSet struct {
	EastAPort, EastBPort, WestPort, EUPort     int
	EastAReady, EastBReady, WestReady, EUReady bool
}

// policyMesh is a running horizon serving testdata/policy's ClusterSet with
// a policy, its backends and a client in east-a (us-east/us-east-1a).
type policyMesh struct {
	eastA, eastB, west, eu *e2eBackend
	backends               []*e2eBackend
	tmpl                   *template.Template
	file                   string // the ClusterSet file horizon serves
	cs                     policyClusterSet
	client                 *e2eClient
}

// startPolicyMesh starts the backends, `horizon serve --clusterset FILE
// --policy testdata/policy/<policy>` with every endpoint ready, and a
// grpc-go xDS client in east-a.
func startPolicyMesh(t *testing.T, policy string) *policyMesh {
	t.Helper()
	// Registered first, so it runs last: after the client, the backends and
	// horizon are gone.
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, leaks)
		}
	})

	m := &policyMesh{
		eastA: startE2EBackend(t, "east-a", "127.0.0.2"),
		eastB: startE2EBackend(t, "east-b", "127.0.0.3"),
		west:  startE2EBackend(t, "west", "127.0.0.4"),
		eu:    startE2EBackend(t, "eu", "127.0.0.5"),
		tmpl:  template.Must(template.ParseFiles(filepath.Join("testdata", "policy", "clusterset.yaml.tmpl"))),
		file:  filepath.Join(t.TempDir(), "clusterset.yaml"),
	}
	m.backends = []*e2eBackend{m.eastA, m.eastB, m.west, m.eu}
	m.cs = policyClusterSet{
		EastAPort: m.eastA.port, EastBPort: m.eastB.port, WestPort: m.west.port, EUPort: m.eu.port,
		EastAReady: true, EastBReady: true, WestReady: true, EUReady: true,
	}
	m.write(t)

	bin := buildHorizon(t)
	h := startHorizon(t, bin, "--clusterset", m.file, "--policy", filepath.Join("testdata", "policy", policy))

	m.client, _ = proxylessClient(t, bin, h, "--cluster", "east-a", "--region", "us-east", "--zone", "us-east-1a")
	return m
}

// write renders the ClusterSet and replaces horizon's file with it
// atomically.
func (m *policyMesh) write(t *testing.T) {
	t.Helper()
	var buf bytes.Buffer
	if err := m.tmpl.Execute(&buf, m.cs); err != nil {
		t.Fatal(err)
	}
	tmp := m.file + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, m.file); err != nil {
		t.Fatal(err)
	}
}

// TestE2EPolicyFailover is the acceptance test of a policy's failover order
// with a real client: traffic stays in the client's zone, then fails over
// zone by zone and region by region, in the order testdata/policy/failover.yaml
// gives (eu-west before us-west, not the alphabetical order), as endpoints
// become not ready, and comes back when they are ready again. With one
// endpoint per locality, a not-ready endpoint takes its whole priority down.
func TestE2EPolicyFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the horizon binary; skipped with -short")
	}
	m := startPolicyMesh(t, "failover.yaml")
	c := m.client

	c.waitFor(t, "east-a", "the first RPC through xDS")
	c.expectAll(t, "all ready", "east-a", m.backends)

	steps := []struct {
		name   string
		change func(*policyClusterSet)
		want   string
	}{
		{"east-a not ready: the other zone of us-east", func(cs *policyClusterSet) { cs.EastAReady = false }, "east-b"},
		{"us-east not ready: eu-west, the policy's first region", func(cs *policyClusterSet) { cs.EastBReady = false }, "eu"},
		{"eu-west not ready too: us-west, the policy's second region", func(cs *policyClusterSet) { cs.EUReady = false }, "west"},
		{"all ready again: back to the client's zone", func(cs *policyClusterSet) {
			cs.EastAReady, cs.EastBReady, cs.EUReady = true, true, true
		}, "east-a"},
	}
	for _, s := range steps {
		s.change(&m.cs)
		m.write(t)
		c.waitFor(t, s.want, s.name)
		c.expectAll(t, s.name, s.want, m.backends)
	}
}

// TestE2EPolicyDistribute is the acceptance test of a policy's distribute
// weights with a real client: testdata/policy/distribute.yaml gives a client
// in us-east 50 % us-east, 30 % eu-west and 20 % us-west, and us-east's 50 %
// is split evenly between its two zones, one endpoint each. Over 2,000 RPCs
// every region's and zone's share must be within 5 percentage points of
// that.
func TestE2EPolicyDistribute(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the horizon binary; skipped with -short")
	}
	m := startPolicyMesh(t, "distribute.yaml")
	c := m.client

	// The client applies the view once every locality has answered: without
	// the distribute entry, the first would take all the traffic.
	for _, b := range m.backends {
		c.waitFor(t, b.cluster, "distribute view applied")
	}

	before := map[string]int64{}
	for _, b := range m.backends {
		before[b.cluster] = b.calls.Load()
	}
	answered := map[string]int{}
	for i := range policyDistributeRPCs {
		got, err := c.call(10 * time.Second)
		if err != nil {
			t.Fatalf("RPC %d of %d failed: %v", i+1, policyDistributeRPCs, err)
		}
		answered[got]++
	}
	for _, b := range m.backends {
		if got := b.calls.Load() - before[b.cluster]; got != int64(answered[b.cluster]) {
			t.Errorf("backend %s got %d RPCs; the client saw %d answers from it", b.cluster, got, answered[b.cluster])
		}
	}
	t.Logf("%d RPCs answered by cluster: %v", policyDistributeRPCs, answered)

	region := map[string]string{"east-a": "us-east", "east-b": "us-east", "eu": "eu-west", "west": "us-west"}
	byRegion := map[string]int{}
	for cluster, n := range answered {
		r, ok := region[cluster]
		if !ok {
			t.Fatalf("an answer from unknown cluster %q", cluster)
		}
		byRegion[r] += n
	}
	checkShares(t, "region", byRegion, map[string]float64{"us-east": 50, "eu-west": 30, "us-west": 20})
	checkShares(t, "cluster", answered, map[string]float64{"east-a": 25, "east-b": 25, "eu": 30, "west": 20})
}

// checkShares checks that each key's share of the counts, in percent, is
// within policyTolerance points of want.
func checkShares(t *testing.T, what string, counts map[string]int, want map[string]float64) {
	t.Helper()
	total := 0
	for _, n := range counts {
		total += n
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var got []string
	for _, k := range keys {
		share := 100 * float64(counts[k]) / float64(total)
		got = append(got, fmt.Sprintf("%s %.1f%% (want %.0f%%)", k, share, want[k]))
		if math.Abs(share-want[k]) > policyTolerance {
			t.Errorf("%s %s: %d of %d RPCs, %.1f%%; want %.0f%% ± %.0f points", what, k, counts[k], total, share, want[k], policyTolerance)
		}
	}
	t.Logf("shares by %s: %v", what, got)
}
