package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// fakeMembers is a fake Members: it records calls and fails Set for names in fail.
type fakeMembers struct {
	mu    sync.Mutex
	calls []string
	cfgs  map[string]MemberConfig
	fail  map[string]bool
}

func newFakeMembers() *fakeMembers {
	return &fakeMembers{cfgs: map[string]MemberConfig{}, fail: map[string]bool{}}
}

func (r *fakeMembers) Set(cfg MemberConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail[cfg.Name] {
		return errors.New("member: refused by the test")
	}
	r.calls = append(r.calls, fmt.Sprintf("set %s %s", cfg.Name, cfg.Origin))
	r.cfgs[cfg.Name] = cfg
	return nil
}

func (r *fakeMembers) Remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "remove "+name)
	delete(r.cfgs, name)
}

func (r *fakeMembers) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *fakeMembers) Config(name string) (MemberConfig, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, ok := r.cfgs[name]
	return cfg, ok
}

// lockedLog is a log sink the watcher's goroutine and the test share.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// adminKubeconfig is a kubeconfig that reaches a test cluster as its admin.
func adminKubeconfig(t *testing.T, rc *rest.Config, user string) []byte {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: user}
	cfg.CurrentContext = "c"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func kubeconfigFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "kubeconfig", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func newMemberSecret(name string, annotations map[string]string, kubeconfig []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelMemberSecret: "true"}, Annotations: annotations},
		Data:       map[string][]byte{SecretKubeconfigKey: kubeconfig},
	}
}

// idleConns ignores the idle keep-alive connections of the test's clients.
var idleConns = []goleak.Option{
	goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
}

// runSecretWatcher runs a SecretWatcher until the test ends (or stop is called)
// and checks that Run returns nil and leaves no goroutine behind.
func runSecretWatcher(t *testing.T, w *SecretWatcher) (stop func()) {
	t.Helper()
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, idleConns...)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-w.Synced():
	case err := <-done:
		t.Fatalf("Run returned before its first sync: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no initial sync")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
			goleak.VerifyNone(t, opts...)
		})
	}
	t.Cleanup(stop)
	return stop
}

// letWatchSettle waits for a watch event to be delivered and handled (or not).
func letWatchSettle() { time.Sleep(700 * time.Millisecond) }

func TestSecretWatcher(t *testing.T) {
	c := kubetest.Start(t, "hub")[0]
	ctx := t.Context()
	good := adminKubeconfig(t, c.Config, "admin")
	rotated := adminKubeconfig(t, c.Config, "admin-rotated")
	for _, ns := range []string{"horizon-system", "elsewhere", "plugins", "ordering"} {
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("lifecycle", func(t *testing.T) {
		secrets := c.Kube.CoreV1().Secrets("horizon-system")
		members := newFakeMembers()
		reg := prometheus.NewRegistry()
		var logs lockedLog
		w := &SecretWatcher{
			Kube: c.Kube, Namespace: "horizon-system", Members: members,
			Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
			Metrics: NewSecretMetrics(reg),
			Resync:  100 * time.Millisecond,
		}
		stop := runSecretWatcher(t, w)
		invalid := func(reason string) float64 { return testutil.ToFloat64(w.Metrics.invalid.WithLabelValues(reason)) }
		want := func(calls ...string) {
			t.Helper()
			if got := members.Calls(); strings.Join(got, "\n") != strings.Join(calls, "\n") {
				t.Fatalf("Members calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(calls, "\n"))
			}
		}
		update := func(name string, edit func(*corev1.Secret)) {
			t.Helper()
			s, err := secrets.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			edit(s)
			if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		setKubeconfig := func(data []byte) func(*corev1.Secret) {
			return func(s *corev1.Secret) { s.Data[SecretKubeconfigKey] = data }
		}

		// Added: Set with the Secret's name, network, locality and origin.
		if _, err := secrets.Create(ctx, newMemberSecret("east", map[string]string{
			AnnotationNetwork: "net-east", AnnotationRegion: "us-east", AnnotationZone: "us-east-1a",
		}, good), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 15*time.Second, "east added", func() bool { return len(members.Calls()) == 1 })
		want("set east secret horizon-system/east")
		cfg, _ := members.Config("east")
		if cfg.Network != "net-east" || cfg.Locality != (discovery.Locality{Region: "us-east", Zone: "us-east-1a"}) || cfg.Rest == nil || cfg.Rest.Host != c.Config.Host {
			t.Fatalf("member config %+v", cfg)
		}

		// Not ours: unlabelled, or in another namespace.
		plain := newMemberSecret("plain", map[string]string{AnnotationNetwork: "n"}, good)
		plain.Labels = nil
		if _, err := secrets.Create(ctx, plain, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Kube.CoreV1().Secrets("elsewhere").Create(ctx, newMemberSecret("far", map[string]string{AnnotationNetwork: "n"}, good), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Resyncs (every 100 ms) and changes that do not matter do nothing.
		update("east", func(s *corev1.Secret) { s.Annotations["unrelated"] = "x"; s.Labels["team"] = "mesh" })
		letWatchSettle()
		want("set east secret horizon-system/east")

		// New credentials: rotated (Source does it make-before-break).
		update("east", setKubeconfig(rotated))
		testkit.Eventually(t, 15*time.Second, "east rotated", func() bool { return len(members.Calls()) == 2 })
		want("set east secret horizon-system/east", "set east secret horizon-system/east")

		// A broken kubeconfig: refused, counted, logged with the Secret's
		// name, an Event on the Secret; the member keeps running.
		update("east", setKubeconfig([]byte("apiVersion: v1\nkind: Config\nclusters: [\n")))
		testkit.Eventually(t, 15*time.Second, "broken kubeconfig counted", func() bool { return invalid(ReasonKubeconfigInvalid) == 1 })
		if !strings.Contains(logs.String(), "secret=horizon-system/east") || !strings.Contains(logs.String(), "reason=kubeconfig_invalid") {
			t.Errorf("no warning naming the Secret:\n%s", logs.String())
		}
		testkit.Eventually(t, 15*time.Second, "an Event on the Secret", func() bool {
			evs, err := c.Kube.CoreV1().Events("horizon-system").List(ctx, metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "east").String(),
			})
			return err == nil && len(evs.Items) > 0 && strings.Contains(evs.Items[0].Message, ReasonKubeconfigInvalid)
		})
		// An exec plugin, without AllowPlugins: refused the same way.
		update("east", setKubeconfig(kubeconfigFixture(t, "exec.yaml")))
		testkit.Eventually(t, 15*time.Second, "plugin refused", func() bool { return invalid(ReasonPluginRefused) == 1 })
		// An unverified apiserver, without AllowInsecureTLS: refused, counted
		// under its own reason, logged naming the Secret and the setting.
		update("east", setKubeconfig(kubeconfigFixture(t, "insecure.yaml")))
		testkit.Eventually(t, 15*time.Second, "insecure TLS refused", func() bool { return invalid(ReasonInsecureTLS) == 1 })
		if !strings.Contains(logs.String(), "reason=insecure_tls_refused") || !strings.Contains(logs.String(), "insecure-skip-tls-verify") {
			t.Errorf("no warning naming the insecure kubeconfig:\n%s", logs.String())
		}
		// No network: refused.
		update("east", func(s *corev1.Secret) { s.Data[SecretKubeconfigKey] = good; delete(s.Annotations, AnnotationNetwork) })
		testkit.Eventually(t, 15*time.Second, "network missing", func() bool { return invalid(ReasonNetworkMissing) == 1 })
		letWatchSettle()
		want("set east secret horizon-system/east", "set east secret horizon-system/east")
		if got := testutil.ToFloat64(w.Metrics.secrets.WithLabelValues("refused")); got != 1 {
			t.Errorf("refused Secrets gauge %v, want 1", got)
		}
		// Fixed: applied again.
		update("east", func(s *corev1.Secret) { s.Annotations[AnnotationNetwork] = "net-east" })
		testkit.Eventually(t, 15*time.Second, "east fixed", func() bool { return len(members.Calls()) == 3 })

		// A second Secret naming the same cluster is refused, and takes over
		// when the first is deleted.
		if _, err := secrets.Create(ctx, newMemberSecret("east-copy", map[string]string{
			AnnotationClusterName: "east", AnnotationNetwork: "net-east",
		}, good), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 15*time.Second, "duplicate refused", func() bool { return invalid(ReasonDuplicateName) == 1 })
		if !strings.Contains(logs.String(), "secret=horizon-system/east-copy") {
			t.Errorf("no warning naming the duplicate:\n%s", logs.String())
		}
		if err := secrets.Delete(ctx, "east", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 15*time.Second, "east removed, then served by east-copy", func() bool { return len(members.Calls()) == 5 })
		want("set east secret horizon-system/east", "set east secret horizon-system/east", "set east secret horizon-system/east",
			"remove east", "set east secret horizon-system/east-copy")

		// Renamed: a different cluster; the old one goes.
		update("east-copy", func(s *corev1.Secret) { s.Annotations[AnnotationClusterName] = "east-2" })
		testkit.Eventually(t, 15*time.Second, "renamed", func() bool { return len(members.Calls()) == 7 })
		if got := members.Calls()[5:]; got[0] != "set east-2 secret horizon-system/east-copy" || got[1] != "remove east" {
			t.Fatalf("rename: %q", got)
		}
		// A bad cluster name, and a Set that fails: refused, member kept.
		update("east-copy", func(s *corev1.Secret) { s.Annotations[AnnotationClusterName] = "East_2" })
		testkit.Eventually(t, 15*time.Second, "bad name", func() bool { return invalid(ReasonClusterName) == 1 })
		members.mu.Lock()
		members.fail["east-3"] = true
		members.mu.Unlock()
		update("east-copy", func(s *corev1.Secret) { s.Annotations[AnnotationClusterName] = "east-3" })
		testkit.Eventually(t, 15*time.Second, "Set failure", func() bool { return invalid(ReasonMember) == 1 })
		if _, ok := members.Config("east-2"); !ok || len(members.Calls()) != 7 {
			t.Fatalf("member east-2 not kept: %q", members.Calls())
		}

		// Label removed: as good as deleted.
		update("east-copy", func(s *corev1.Secret) { delete(s.Labels, LabelMemberSecret) })
		testkit.Eventually(t, 15*time.Second, "unlabelled", func() bool { return len(members.Calls()) == 8 })
		want("set east secret horizon-system/east", "set east secret horizon-system/east", "set east secret horizon-system/east",
			"remove east", "set east secret horizon-system/east-copy", "set east-2 secret horizon-system/east-copy", "remove east", "remove east-2")
		stop()
	})

	t.Run("plugins allowed", func(t *testing.T) {
		members := newFakeMembers()
		w := &SecretWatcher{Kube: c.Kube, Namespace: "plugins", Members: members, AllowPlugins: true}
		runSecretWatcher(t, w)
		if _, err := c.Kube.CoreV1().Secrets("plugins").Create(ctx, newMemberSecret("eks", map[string]string{AnnotationNetwork: "aws"}, kubeconfigFixture(t, "exec.yaml")), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 15*time.Second, "eks added", func() bool { return len(members.Calls()) == 1 })
		if cfg, _ := members.Config("eks"); cfg.Rest.ExecProvider == nil || cfg.Rest.ExecProvider.Command != "aws" {
			t.Fatalf("exec provider %+v", cfg.Rest.ExecProvider)
		}
	})

	// At start, the older of two Secrets naming one cluster wins whatever
	// their names, and Synced means both have been handled.
	t.Run("start", func(t *testing.T) {
		secrets := c.Kube.CoreV1().Secrets("ordering")
		if _, err := secrets.Create(ctx, newMemberSecret("zz-old", map[string]string{AnnotationClusterName: "west", AnnotationNetwork: "n"}, good), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // creation timestamps have seconds
		if _, err := secrets.Create(ctx, newMemberSecret("aa-new", map[string]string{AnnotationClusterName: "west", AnnotationNetwork: "n"}, good), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := secrets.Create(ctx, newMemberSecret("broken", map[string]string{AnnotationNetwork: "n"}, []byte("{")), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		members := newFakeMembers()
		w := &SecretWatcher{Kube: c.Kube, Namespace: "ordering", Members: members, Metrics: NewSecretMetrics(prometheus.NewRegistry())}
		runSecretWatcher(t, w) // returns once Synced
		if got := members.Calls(); len(got) != 1 || got[0] != "set west secret ordering/zz-old" {
			t.Fatalf("calls at Synced: %q", got)
		}
		if testutil.ToFloat64(w.Metrics.invalid.WithLabelValues(ReasonDuplicateName)) != 1 || testutil.ToFloat64(w.Metrics.invalid.WithLabelValues(ReasonKubeconfigInvalid)) != 1 {
			t.Error("refusals not counted at start")
		}
	})
}

func TestSecretWatcherNeedsFields(t *testing.T) {
	if err := (&SecretWatcher{}).Run(t.Context()); err == nil {
		t.Fatal("Run without a client, namespace and members")
	}
}
