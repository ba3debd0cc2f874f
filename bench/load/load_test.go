package load

import (
	"bytes"
	"context"
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
	} {
		sc.Timeout = 10 * time.Second
		sc.Conns = 3
		r, err := Run(context.Background(), sc, inProcess(t), nil)
		if err != nil {
			t.Fatalf("%s delta=%v: %v", sc.Name, sc.Delta, err)
		}
		if r.Unconverged != 0 || len(r.Latencies) != sc.Changes {
			t.Errorf("%s delta=%v: %d of %d changes converged", sc.Name, sc.Delta, len(r.Latencies), sc.Changes)
		}
		if r.UnaffectedProxies == 0 {
			t.Errorf("%s: no unaffected proxies to check", sc.Name)
		}
		if r.UnaffectedBytes != 0 || r.UnaffectedEDSBytes != 0 {
			t.Errorf("%s delta=%v: unaffected proxies received %d bytes (%d EDS)", sc.Name, sc.Delta, r.UnaffectedBytes, r.UnaffectedEDSBytes)
		}
		if r.EDSBytes == 0 {
			t.Errorf("%s: the changes sent no EDS", sc.Name)
		}
		if r.NACKs != 0 {
			t.Errorf("%s: %d NACKs", sc.Name, r.NACKs)
		}
		if r.Affected != float64(sc.Proxies)/4 {
			t.Errorf("%s: %v proxies affected per change, want %v (one network of 4)", sc.Name, r.Affected, sc.Proxies/4)
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
}
