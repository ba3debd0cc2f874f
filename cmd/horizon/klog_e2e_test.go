package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// impersonatingKubeconfigFile is adminKubeconfigFile acting as user.
func impersonatingKubeconfigFile(t *testing.T, rc *rest.Config, user string) string {
	t.Helper()
	as := rest.CopyConfig(rc)
	as.Impersonate.UserName = user
	path := filepath.Join(t.TempDir(), user+".yaml")
	if err := kubetest.WriteKubeconfig(path, as); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestE2ELeaderElectionWithoutRights runs `horizon serve --log-format json`
// against a real API server whose control-plane credentials impersonate a
// user without rights on Leases, with POD_NAMESPACE set and no
// --leader-election-namespace:
//   - the Lease is sought in the pod's namespace;
//   - the failure is logged by Horizon as a warning with its reason (once:
//     rate-limited), counted in horizon_mcs_leader_election_failures_total
//     and shown in /debug/mcs;
//   - client-go's own klog lines (the elector's errors) come out through
//     Horizon's logger: every stderr line is JSON.
func TestE2ELeaderElectionWithoutRights(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c := kubetest.Start(t, "central")[0]
	kubeSeed(t, c, "echo", true, "10.0.1.1")
	const ns = "mesh-ns"
	if _, err := c.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAMESPACE", ns) // the child inherits it
	bin := buildHorizon(t)

	h := &horizonProcess{
		xdsAddr: freeLoopbackAddr(t), httpAddr: freeLoopbackAddr(t),
		http: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second},
		out:  &testkit.Buffer{}, done: make(chan struct{}),
	}
	stderr := &testkit.Buffer{}
	cmd := exec.Command(bin, "serve", "--xds-address", h.xdsAddr, "--http-address", h.httpAddr, "--log-format", "json",
		"--member", "name=central,network=net-central,kubeconfig="+adminKubeconfigFile(t, c.Config),
		"--kubeconfig", impersonatingKubeconfigFile(t, c.Config, "no-lease-rights"))
	cmd.Stdout, cmd.Stderr = h.out, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.err = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(e2eWait):
			cmd.Process.Kill()
			<-h.done
		}
		if t.Failed() {
			t.Logf("horizon serve (exit: %v)\nstdout:\n%s\nstderr:\n%s", h.err, h.out, stderr)
		}
	})

	failures := func() error {
		want := `horizon_mcs_leader_election_failures_total{reason="forbidden"} `
		for line := range strings.Lines(scrape(t, h)) {
			if n, ok := strings.CutPrefix(line, want); ok && strings.TrimSpace(n) != "0" && strings.TrimSpace(n) != "1" {
				return nil
			}
		}
		return fmt.Errorf("want 2 or more forbidden failures counted")
	}
	testkit.Eventually(t, e2eWait, "failures counted", func() error {
		select {
		case <-h.done:
			t.Fatalf("horizon serve exited: %v", h.err)
		default:
		}
		resp, err := h.http.Get("http://" + h.httpAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return failures()
	})

	resp, err := h.http.Get("http://" + h.httpAddr + "/debug/mcs")
	if err != nil {
		t.Fatal(err)
	}
	var debug struct{ Election mcs.ElectionStatus }
	err = json.NewDecoder(resp.Body).Decode(&debug)
	resp.Body.Close()
	if st := debug.Election; err != nil || !st.Enabled || st.Leader || st.Namespace != ns || st.Reason != mcs.ElectionForbidden ||
		!strings.Contains(st.LastError, "no-lease-rights") || st.Failures < 2 {
		t.Errorf("/debug/mcs: %+v (%v)", st, err)
	}

	var warnings, klogLines int
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("stderr line is not JSON: %q", sc.Text())
			continue
		}
		if rec["component"] == "client-go" {
			klogLines++
		}
		if rec["level"] == "WARN" && rec["reason"] == mcs.ElectionForbidden && strings.HasPrefix(fmt.Sprint(rec["msg"]), "leader election cannot take the Lease") {
			warnings++
		}
	}
	if klogLines == 0 {
		t.Error("no line of client-go's came through Horizon's logger")
	}
	if warnings != 1 {
		t.Errorf("%d leader-election warnings, want 1 (rate-limited)", warnings)
	}
}
