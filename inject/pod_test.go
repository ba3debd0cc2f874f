package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/internal/testkit/manifests"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixture is what every case is injected with: testdata/config.yaml, the
// ClusterSet of testdata/clusterset.yaml, cluster west, the nodes of
// testdata/nodes.yaml and the bundle testdata/bundle.pem.
type fixture struct {
	cfg    Config
	target func(pod *corev1.Pod) Target
	// resolver finds the same targets for the webhook.
	resolver Resolver
}

func loadFixture(t testing.TB) fixture {
	t.Helper()
	cfg, err := LoadConfig("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := file.Load("testdata/clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile("testdata/bundle.pem")
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*corev1.Node{}
	data, err := os.ReadFile("testdata/nodes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var n corev1.Node
		if err := dec.Decode(&n); err != nil {
			break
		}
		nodes[n.Name] = &n
	}
	resolver := Resolver{
		ClusterSet: func() *discovery.ClusterSet { return cs },
		Node: func(_ context.Context, _, name string) (*corev1.Node, error) {
			if n, ok := nodes[name]; ok {
				return n, nil
			}
			return nil, fmt.Errorf("node %q not found", name)
		},
		Bundle: func() ([]byte, error) { return bundle, nil },
		Log:    slog.New(slog.DiscardHandler),
	}
	return fixture{cfg: cfg, resolver: resolver, target: func(pod *corev1.Pod) Target {
		tg, err := TargetFor(cs, "west", nodes[pod.Spec.NodeName], bundle)
		if err != nil {
			t.Fatal(err)
		}
		return tg
	}}
}

var podWithoutNode = &corev1.Pod{}

func readPod(t testing.TB, path string) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(data, &pod); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &pod
}

// TestPodGolden injects each testdata/pods/*.in.yaml: the result is
// NAME.out.yaml (the injected pod), NAME.skip (why it is left alone) or
// NAME.err (the error). Run with -update to rewrite them.
func TestPodGolden(t *testing.T) {
	fx := loadFixture(t)
	ins, _ := filepath.Glob("testdata/pods/*.in.yaml")
	if len(ins) < 10 {
		t.Fatalf("%d cases in testdata/pods", len(ins))
	}
	for _, in := range ins {
		base := strings.TrimSuffix(in, ".in.yaml")
		t.Run(filepath.Base(base), func(t *testing.T) {
			pod := readPod(t, in)
			orig := pod.DeepCopy()
			out, err := Pod(fx.cfg, fx.target(pod), pod)
			if !equality.Semantic.DeepEqual(pod, orig) {
				t.Fatal("Pod changed its argument")
			}
			var got []byte
			var ext string
			var skip Skip
			switch {
			case errors.As(err, &skip):
				got, ext = []byte(skip.Error()+"\n"), ".skip"
			case err != nil:
				got, ext = []byte(err.Error()+"\n"), ".err"
				if !strings.Contains(err.Error(), "pod demo/"+pod.Name) {
					t.Errorf("error %q does not name the pod", err)
				}
			default:
				if got, err = yaml.Marshal(out); err != nil {
					t.Fatal(err)
				}
				ext = ".out.yaml"
				checkInjected(t, fx, pod, out)
			}
			golden := base + ext
			if *update {
				for _, e := range []string{".out.yaml", ".skip", ".err"} {
					os.Remove(base + e)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (the result is %s; run with -update)", err, ext)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (run with -update):\ngot:\n%s", golden, got)
			}
		})
	}
}

// checkInjected holds for every injected pod.
func checkInjected(t *testing.T, fx fixture, pod, out *corev1.Pod) {
	t.Helper()
	// The admission patch turns the pod into the injected one.
	patch, err := Patch(pod, out)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(pod)
	b, err := p.Apply(a)
	if err != nil {
		t.Fatalf("patch %s: %v", patch, err)
	}
	var patched corev1.Pod
	if err := json.Unmarshal(b, &patched); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(&patched, out) {
		t.Errorf("the patch does not give the injected pod")
	}
	// Names: unique DNS labels; every mount has its volume.
	names := map[string]bool{}
	all := slices.Concat(out.Spec.InitContainers, out.Spec.Containers)
	for _, c := range all {
		if names[c.Name] {
			t.Errorf("container %q twice", c.Name)
		}
		names[c.Name] = true
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			t.Errorf("container %q: %s", c.Name, msg)
		}
		if c.Image == "" {
			t.Errorf("container %q has no image", c.Name)
		}
	}
	vols := map[string]bool{}
	for _, v := range out.Spec.Volumes {
		if vols[v.Name] {
			t.Errorf("volume %q twice", v.Name)
		}
		vols[v.Name] = true
	}
	for _, c := range all {
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				t.Errorf("container %q mounts %q, which is no volume", c.Name, m.Name)
			}
		}
	}
	for _, c := range out.Spec.Containers {
		if c.RestartPolicy != nil {
			t.Errorf("container %q has a restartPolicy: only init containers may", c.Name)
		}
	}
	// The pod's own containers come after Horizon's, in their order.
	n := len(out.Spec.InitContainers) - len(pod.Spec.InitContainers)
	if !equality.Semantic.DeepEqual(out.Spec.InitContainers[n:], pod.Spec.InitContainers) && len(pod.Spec.InitContainers) > 0 {
		t.Errorf("the pod's init containers changed")
	}
	// Injecting again changes nothing.
	if _, err := Pod(fx.cfg, fx.target(out), out); !errors.Is(err, SkipInjected) {
		t.Errorf("second injection: %v, want %v", err, SkipInjected)
	}
}

// TestParseConfigErrors: a bad config file is refused with file:line.
func TestParseConfigErrors(t *testing.T) {
	ins, _ := filepath.Glob("testdata/config-invalid/*.yaml")
	if len(ins) == 0 {
		t.Fatal("no cases")
	}
	for _, in := range ins {
		t.Run(filepath.Base(in), func(t *testing.T) {
			_, err := LoadConfig(in)
			if err == nil {
				t.Fatal("no error")
			}
			golden := strings.TrimSuffix(in, ".yaml") + ".err"
			got := []byte(err.Error() + "\n")
			if *update {
				os.WriteFile(golden, got, 0o644)
				return
			}
			want, _ := os.ReadFile(golden)
			if !bytes.Equal(got, want) {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
}

// TestTLSModeLabelIsDiscoverys: the label injection writes is the one
// discovery/kube reads to mark an endpoint as accepting mutual TLS.
func TestTLSModeLabelIsDiscoverys(t *testing.T) {
	if LabelTLSMode != kube.LabelTLSMode || TLSModeMTLS != kube.TLSModeMTLS {
		t.Fatalf("inject writes %s=%s; discovery/kube reads %s=%s", LabelTLSMode, TLSModeMTLS, kube.LabelTLSMode, kube.TLSModeMTLS)
	}
}

// TestClusterXDSAddress: a pod injected for a cluster that
// testdata/config-clusters.yaml overrides reaches Horizon at that cluster's
// xdsAddress, in its bootstrap and its agent, in both modes; a pod of
// another cluster at the file's xdsAddress.
func TestClusterXDSAddress(t *testing.T) {
	cfg, err := LoadConfig("testdata/config-clusters.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := file.Load("testdata/clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile("testdata/bundle.pem")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ cluster, pod, want string }{
		{"east", "sidecar", "horizon.example.com:15012"},
		{"east", "proxyless", "horizon.example.com:15012"},
		{"west", "sidecar", "horizon.horizon-system.svc:15012"},
		{"west", "proxyless", "horizon.horizon-system.svc:15012"},
	} {
		t.Run(tc.cluster+"/"+tc.pod, func(t *testing.T) {
			tg, err := TargetFor(cs, tc.cluster, nil, bundle)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Pod(cfg, tg, readPod(t, "testdata/pods/"+tc.pod+".in.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			seen := 0
			for _, c := range out.Spec.InitContainers {
				if c.Name != ContainerBootstrap && c.Name != ContainerAgent {
					continue
				}
				seen++
				if got := manifests.FlagValues(c.Args, "--mtls-address"); !slices.Equal(got, []string{tc.want}) {
					t.Errorf("%s --mtls-address %q, want %s", c.Name, got, tc.want)
				}
				if got := manifests.FlagValues(c.Args, "--cluster"); !slices.Equal(got, []string{tc.cluster}) {
					t.Errorf("%s --cluster %q, want %s", c.Name, got, tc.cluster)
				}
			}
			if seen != 2 {
				t.Errorf("%d of the bootstrap and agent containers, want both", seen)
			}
		})
	}
}
