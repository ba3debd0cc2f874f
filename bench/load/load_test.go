package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// inProcess runs the fleet in this process over pipes: the same protocol
// horizon-load speaks to its fleet process.
func inProcess(t *testing.T) StartFleet {
	return func(ctx context.Context, cfg FleetConfig) (*FleetClient, error) {
		cmdR, cmdW := io.Pipe()
		repR, repW := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := ServeFleet(ctx, cfg, cmdR, repW)
			repW.CloseWithError(io.EOF)
			done <- err
		}()
		return NewFleetClient(cmdW, repR, func() error {
			cmdW.Close()
			return <-done
		}), nil
	}
}

func TestMarkerAddress(t *testing.T) {
	for _, i := range []int{0, 1, 255, 256, 65535, 65536, maxMarkers - 1} {
		if got, ok := markerIndex(MarkerAddress(i)); !ok || got != i {
			t.Errorf("markerIndex(MarkerAddress(%d)) = %d, %v", i, got, ok)
		}
	}
	for _, a := range []string{"10.0.0.1", "100.63.0.1", "100.128.0.1", "172.16.0.1", "::1"} {
		if _, ok := markerIndex(a); ok {
			t.Errorf("%s taken for a marker", a)
		}
	}
}

func TestBuildKeepsCounts(t *testing.T) {
	sc := Scenario{Name: Churn, Proxies: 1, Endpoints: 12, Changes: 30}
	base, changes, err := sc.Build()
	if err != nil {
		t.Fatal(err)
	}
	count := func(i int) int {
		n := 0
		for _, c := range changes[i].Set.Clusters {
			for _, s := range c.Services {
				n += len(s.Endpoints)
			}
		}
		return n
	}
	want := 0
	for _, c := range base.Clusters {
		for _, s := range c.Services {
			want += len(s.Endpoints)
		}
	}
	for i, c := range changes {
		if got := count(i); got != want {
			t.Fatalf("change %d: %d endpoints, want %d", i, got, want)
		}
		if c.Network == "net-3" {
			t.Fatalf("change %d touches the control network", i)
		}
		if i > 0 && c.Set.Version() == changes[i-1].Set.Version() {
			t.Fatalf("change %d changes nothing", i)
		}
	}
}

// TestSmoke runs tiny scenarios end to end, both protocols, and checks
// correctness only: every affected proxy ACKed every change, unaffected
// proxies received nothing, the table is produced. Nothing here asserts a
// time.
func TestSmoke(t *testing.T) {
	var results []*Result
	for _, sc := range []Scenario{
		{Name: HotService, Proxies: 20, Endpoints: 10, Changes: 5, Storm: true},
		{Name: HotService, Proxies: 20, Endpoints: 10, Changes: 5, Delta: true, Storm: true},
		{Name: Churn, Proxies: 20, Endpoints: 10, Services: 3, Changes: 12, Rate: 100, Delta: true},
		{Name: NewService, Proxies: 20, Endpoints: 10, Changes: 4, Settle: 50 * time.Millisecond},
		{Name: NewService, Proxies: 20, Endpoints: 10, Changes: 4, Delta: true, Settle: 50 * time.Millisecond},
		{Name: Gateway, Proxies: 20, Endpoints: 10, Services: 2, Changes: 3},
		{Name: Gateway, Proxies: 20, Endpoints: 10, Changes: 3, Delta: true},
		{Name: Idle, Proxies: 20, Endpoints: 10},
	} {
		sc.Timeout = 10 * time.Second
		sc.Conns = 3
		name := fmt.Sprintf("%s delta=%v", sc.Name, sc.Delta)
		r, err := Run(context.Background(), sc, inProcess(t), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Unconverged != 0 || len(r.Latencies) != sc.Changes {
			t.Errorf("%s: %d of %d changes converged", name, len(r.Latencies), sc.Changes)
		}
		if r.NACKs != 0 {
			t.Errorf("%s: %d NACKs", name, r.NACKs)
		}
		p := float64(sc.Proxies)
		switch sc.Name {
		case Idle:
			if r.Bytes != 0 || r.Idle1.Heap == 0 {
				t.Errorf("%s: %d bytes without changes, idle heap %d", name, r.Bytes, r.Idle1.Heap)
			}
			results = append(results, r)
			continue
		case NewService:
			// Half the changes affect everyone, half net-0.
			if want := (p + p/4) / 2; r.Affected != want {
				t.Errorf("%s: %v proxies affected per change, want %v", name, r.Affected, want)
			}
			svc, ep := r.ByKind[KindService], r.ByKind[KindEndpoint]
			if svc == nil || ep == nil || svc.Changes != sc.Changes/2 || ep.Changes != sc.Changes/2 {
				t.Fatalf("%s: by kind %+v", name, r.ByKind)
			}
			if svc.BytesByType[CDS] == 0 || svc.BytesByType[EDS] == 0 {
				t.Errorf("%s: adding a service sent %v bytes by type, want CDS and EDS", name, svc.BytesByType)
			}
			if ep.BytesByType[EDS] == 0 {
				t.Errorf("%s: endpoint changes sent no EDS", name)
			}
			if r.CDSOnEndpointChanges != 0 || ep.BytesByType[LDS] != 0 || ep.BytesByType[RDS] != 0 {
				t.Errorf("%s: endpoint changes sent %v bytes by type: CDS/LDS/RDS must be 0", name, ep.BytesByType)
			}
		case Gateway:
			if want := p * 3 / 4; r.Affected != want {
				t.Errorf("%s: %v proxies affected per change, want %v (three networks of 4)", name, r.Affected, want)
			}
		default:
			if r.Affected != p/4 {
				t.Errorf("%s: %v proxies affected per change, want %v (one network of 4)", name, r.Affected, p/4)
			}
			if r.CDSOnEndpointChanges != 0 {
				t.Errorf("%s: endpoint changes sent %d CDS bytes", name, r.CDSOnEndpointChanges)
			}
		}
		if sc.Name != NewService {
			if r.UnaffectedProxies == 0 {
				t.Errorf("%s: no unaffected proxies to check", name)
			}
			if r.UnaffectedBytes != 0 || r.UnaffectedEDSBytes != 0 {
				t.Errorf("%s: unaffected proxies received %d bytes (%d EDS)", name, r.UnaffectedBytes, r.UnaffectedEDSBytes)
			}
		}
		if r.EDSBytes == 0 {
			t.Errorf("%s: the changes sent no EDS", name)
		}
		results = append(results, r)
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, Machine(), results); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Log("\n" + out)
	for _, r := range results {
		t.Logf("%s bytes by type %v", r.Scenario.Name, r.BytesByType)
	}
	if !strings.Contains(out, "# machine: nproc=") || strings.Count(out, "\n") != 2+len(results) {
		t.Errorf("table:\n%s", out)
	}
	buf.Reset()
	if err := WriteKinds(&buf, results); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + buf.String())
	if got := strings.Count(buf.String(), "\n"); got != 1+4 {
		t.Errorf("kinds table: %d lines, want 5:\n%s", got, buf.String())
	}
}

// TestForgedSubZones: with ForgeSubZone every proxy declares its own
// sub-zone, in its cluster's region and zone; without, none does.
func TestForgedSubZones(t *testing.T) {
	cfg := FleetConfig{Proxies: 40, Networks: 2, ClustersPerNetwork: 1}
	for _, id := range cfg.Identities() {
		if id.Locality.SubZone != "" {
			t.Fatalf("%s declares sub-zone %q without ForgeSubZone", id.ID, id.Locality.SubZone)
		}
	}
	cfg.ForgeSubZone = true
	seen := map[string]bool{}
	honest := FleetConfig{Proxies: 40, Networks: 2, ClustersPerNetwork: 1}.Identities()
	for i, id := range cfg.Identities() {
		if id.Locality.SubZone == "" || seen[id.Locality.SubZone] {
			t.Errorf("%s: sub-zone %q, empty or not its own", id.ID, id.Locality.SubZone)
		}
		seen[id.Locality.SubZone] = true
		if id.Locality.Region != honest[i].Locality.Region || id.Locality.Zone != honest[i].Locality.Zone {
			t.Errorf("%s: %v, want the honest proxy's region and zone %v", id.ID, id.Locality, honest[i].Locality)
		}
	}
}

// TestRateSearch runs a tiny stepping search in process: one step per
// rate, every change of every step converged and counted, then the storm.
func TestRateSearch(t *testing.T) {
	sc := Scenario{Name: Churn, Proxies: 20, Endpoints: 10, Services: 3, Changes: 4, Delta: true,
		Rates: []float64{50, 100}, StepFor: 10 * time.Millisecond, MaxStepChanges: 6, Timeout: 10 * time.Second, Conns: 2, Storm: true}
	r, err := Run(context.Background(), sc, inProcess(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Steps) != 2 {
		t.Fatalf("%d steps: without a p99 limit every rate runs", len(r.Steps))
	}
	total := 0
	for _, st := range r.Steps {
		if st.Changes != sc.Changes || st.Converged != st.Changes || !st.Within {
			t.Errorf("step %+v: want %d changes, all converged", st, sc.Changes)
		}
		total += st.Changes
	}
	if len(r.Changes) != total || len(r.Latencies) != total || r.UnaffectedBytes != 0 || r.ViewsSynced < 1 {
		t.Errorf("%d changes recorded, %d converged, want %d; %d bytes to unaffected proxies; %d views", len(r.Changes), len(r.Latencies), total, r.UnaffectedBytes, r.ViewsSynced)
	}
	if r.StormTime <= 0 {
		t.Errorf("no storm after the search")
	}

	// A limit no step can keep stops the search after the first, and is
	// the search's answer, not an error.
	sc.P99Limit, sc.Storm = time.Nanosecond, false
	r, err = Run(context.Background(), sc, inProcess(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Steps) != 1 || r.Steps[0].Within || r.Steps[0].Converged != sc.Changes {
		t.Errorf("with a 1 ns limit: steps %+v, want one, over the limit, converged", r.Steps)
	}
}
