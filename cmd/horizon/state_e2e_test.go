package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// memberStatus reads one member's status from /debug/members.
func memberStatus(t *testing.T, h *horizonProcess, name string) (kube.MemberStatus, error) {
	t.Helper()
	resp, err := h.http.Get("http://" + h.httpAddr + "/debug/members")
	if err != nil {
		return kube.MemberStatus{}, err
	}
	defer resp.Body.Close()
	var members []kube.MemberStatus
	if err := json.NewDecoder(resp.Body).Decode(&members); err != nil {
		return kube.MemberStatus{}, err
	}
	for _, m := range members {
		if m.Name == name {
			return m, nil
		}
	}
	return kube.MemberStatus{}, fmt.Errorf("no member %s in %+v", name, members)
}

// stateStore is where a test's Horizon keeps member states: its flags, how
// to tell that a member's state is saved, and how to corrupt one (returning
// the name the error must give).
type stateStore struct {
	args    func(cl []*kubetest.Cluster) []string
	saved   func(t *testing.T, cl []*kubetest.Cluster, member string) error
	corrupt func(t *testing.T, cl []*kubetest.Cluster, member string) string
}

// TestE2ERestartWithAMemberDown: the headline fault of issue 20. Horizon
// restarted while one member's API server is down serves proxies of both
// members within --member-sync-wait plus a bound, the down member from its
// persisted state (marked persisted, stale); when the API server returns,
// its live state replaces the persisted one. A corrupt state is refused
// with an error naming it, and the member waits as without a store. Once
// with --state-dir, once with --state-namespace (ConfigMaps in east, the
// control plane's cluster, written by the MCS leader).
func TestE2ERestartWithAMemberDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two kube-apiservers, twice")
	}
	corruptJSON := []byte(`{"format":"horizon.member-state/v1","member":"west",`)
	t.Run("state dir", func(t *testing.T) {
		dir := t.TempDir()
		restartWithAMemberDown(t, stateStore{
			args: func([]*kubetest.Cluster) []string { return []string{"--state-dir", dir} },
			saved: func(t *testing.T, _ []*kubetest.Cluster, member string) error {
				_, err := os.Stat(filepath.Join(dir, member+".json"))
				return err
			},
			corrupt: func(t *testing.T, _ []*kubetest.Cluster, member string) string {
				path := filepath.Join(dir, member+".json")
				if err := os.WriteFile(path, corruptJSON, 0o600); err != nil {
					t.Fatal(err)
				}
				return path
			},
		})
	})
	t.Run("state ConfigMaps", func(t *testing.T) {
		restartWithAMemberDown(t, stateStore{
			args: func(cl []*kubetest.Cluster) []string {
				return []string{"--state-namespace", "horizon-system", "--kubeconfig", adminKubeconfigFile(t, cl[0].Config),
					"--leader-election-namespace", "horizon-system"}
			},
			saved: func(t *testing.T, cl []*kubetest.Cluster, member string) error {
				_, err := cl[0].Kube.CoreV1().ConfigMaps("horizon-system").Get(t.Context(), kube.ConfigMapName(member), metav1.GetOptions{})
				return err
			},
			corrupt: func(t *testing.T, cl []*kubetest.Cluster, member string) string {
				var buf bytes.Buffer
				zw := gzip.NewWriter(&buf)
				zw.Write(corruptJSON)
				zw.Close()
				cms := cl[0].Kube.CoreV1().ConfigMaps("horizon-system")
				cm, err := cms.Get(t.Context(), kube.ConfigMapName(member), metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				cm.BinaryData = map[string][]byte{kube.ConfigMapStateKey: buf.Bytes()}
				if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				return "ConfigMap horizon-system/" + kube.ConfigMapName(member)
			},
		})
	})
}

func restartWithAMemberDown(t *testing.T, store stateStore) {
	cl := kubetest.Start(t, "east", "west")
	east, west := cl[0], cl[1]
	kubeSeed(t, east, "echo", true, "10.0.1.1", "10.0.1.2")
	kubeSeed(t, west, "echo", true, "10.1.1.1")
	kubeGateway(t, east, "net-east", "198.51.100.1")
	kubeGateway(t, west, "net-west", "198.51.100.2")

	const syncWait = 3 * time.Second
	// Serving both members within the wait, a publish tick and the time
	// proxies take to fetch.
	const bound = syncWait + 10*time.Second
	args := append(store.args(cl), "--member-sync-wait", syncWait.String())
	for _, c := range cl {
		args = append(args, "--member", fmt.Sprintf("name=%s,network=net-%s,kubeconfig=%s", c.Name, c.Name, adminKubeconfigFile(t, c.Config)))
	}
	bin := buildHorizon(t)
	echoSet := "outbound_.7070_._.echo.demo.svc.clusterset.local"
	extraSet := "outbound_.7070_._.extra.demo.svc.clusterset.local"
	eastView := map[string]string{"10.0.1.1:7070": "1@0", "10.0.1.2:7070": "1@0", "198.51.100.2:15443": "1@0"}
	westView := map[string]string{"10.1.1.1:7070": "1@0", "198.51.100.1:15443": "2@0"}

	h := startHorizon(t, bin, args...)
	waitEDS(t, h, "east", echoSet, eastView)
	waitEDS(t, h, "west", echoSet, westView)
	testkit.Eventually(t, e2eWait, "both members' states saved", func() error {
		for _, c := range cl {
			if err := store.saved(t, cl, c.Name); err != nil {
				return err
			}
		}
		return nil
	})
	h.stop(t)

	// While Horizon is down, west gains an exported service its persisted
	// state lacks, then its API server goes down.
	kubeSeed(t, west, "extra", true, "10.1.3.1")
	if err := west.StopAPIServer(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	h = startHorizon(t, bin, args...)
	waitEDS(t, h, "east", echoSet, eastView)
	waitEDS(t, h, "west", echoSet, westView)
	if d := time.Since(start); d > bound {
		t.Fatalf("both members' proxies served %v after the restart, more than %v", d, bound)
	}
	t.Logf("both members' proxies served %v after the restart (--member-sync-wait %v)", time.Since(start), syncWait)
	if st, err := memberStatus(t, h, "west"); err != nil || st.State != kube.Persisted || st.PersistedAt.IsZero() {
		t.Fatalf("west %+v (%v), want served from its persisted state", st, err)
	}
	if st, err := memberStatus(t, h, "east"); err != nil || st.State != kube.Synced {
		t.Fatalf("east %+v (%v), want synced", st, err)
	}
	if m := metricsText(t, h); !strings.Contains(m, `horizon_kube_cluster_state{cluster="west",state="persisted"} 1`) {
		t.Fatalf("/metrics does not show west persisted:\n%s", grepLines(m, "horizon_kube_"))
	}
	if got, err := edsView(t, h.xdsAddr, "east", extraSet); err != nil || got != nil {
		t.Fatalf("east sees west's extra service before west is back: %v %v", got, err)
	}

	// West returns: its live state, with the extra service, replaces the
	// persisted one.
	if err := west.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 3*e2eWait, "west synced", func() error {
		st, err := memberStatus(t, h, "west")
		if err == nil && st.State != kube.Synced {
			err = fmt.Errorf("west %s", st.State)
		}
		return err
	})
	waitEDS(t, h, "east", extraSet, map[string]string{"198.51.100.2:15443": "1@0"})
	waitEDS(t, h, "west", echoSet, westView)
	h.stop(t)

	// A corrupt state: refused with an error naming it, counted, and west
	// waits: nothing is served until its API server answers.
	westFile := store.corrupt(t, cl, "west")
	if err := west.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	h, err := launchHorizon(t, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, e2eWait, "the corrupt state refused", func() error {
		for _, want := range []string{"persisted state is refused", westFile, "corrupt"} {
			if !strings.Contains(h.out.String(), want) {
				return fmt.Errorf("log lacks %q", want)
			}
		}
		return nil
	})
	if m := metricsText(t, h); !strings.Contains(m, `horizon_kube_state_load_errors_total{reason="corrupt"} 1`) {
		t.Fatalf("/metrics does not count the corrupt state:\n%s", grepLines(m, "horizon_kube_state"))
	}
	if _, err := edsView(t, h.xdsAddr, "east", echoSet); err == nil || !strings.Contains(err.Error(), "no ClusterSet yet") {
		t.Fatalf("served without west: %v", err)
	}
	if err := west.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 3*e2eWait, "served once west syncs", func() error {
		select {
		case <-h.done:
			return errors.New("horizon serve exited")
		default:
		}
		_, err := edsView(t, h.xdsAddr, "west", echoSet)
		return err
	})
	waitEDS(t, h, "east", extraSet, map[string]string{"198.51.100.2:15443": "1@0"})
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
