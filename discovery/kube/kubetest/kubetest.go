// Package kubetest starts real member clusters for tests: one kube-apiserver
// and etcd each, built from their Go modules by `make kube-tools` (the
// separate module in ./tools) and started through controller-runtime's
// envtest, with the Multi-Cluster Services CRDs installed.
package kubetest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"
)

// Cluster is one running member cluster.
type Cluster struct {
	Name   string
	Config *rest.Config
	Kube   kubernetes.Interface
	MCS    mcsclient.Interface

	env *envtest.Environment
	mu  sync.Mutex
	up  bool
}

// Assets returns the folder holding kube-apiserver and etcd: KUBEBUILDER_ASSETS,
// or bin/k8s at the repository root.
func Assets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		_, self, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(self), "..", "..", "..", "bin", "k8s")
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make kube-tools` (make test does it)", bin, dir)
		}
	}
	return dir, nil
}

func mcsCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, raw := range [][]byte{mcscrd.ServiceExportCRD, mcscrd.ServiceImportCRD} {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(raw, crd); err != nil {
			return nil, fmt.Errorf("MCS CRD: %w", err)
		}
		out = append(out, crd)
	}
	return out, nil
}

// Options change how Start launches the clusters. The zero value is Start's
// behaviour: each kube-apiserver listens on 127.0.0.1 only.
type Options struct {
	// ReachableFromPods makes each kube-apiserver listen on every address
	// (0.0.0.0, still authenticated: client certificates and tokens, RBAC),
	// so pods of internal/nodetest's nodes reach it on their bridge's gateway
	// address. Its serving certificate names only localhost and 0.0.0.0, so
	// clients verify it with ServerName "localhost" (Config does, and so do
	// the kubeconfigs of nodetest's Node.PodKubeconfig). It issues projected
	// ServiceAccount tokens (TokenRequest) like every envtest apiserver: the
	// issuer is its own URL and the signing key is in its certificate folder.
	ReachableFromPods bool
	// RuntimeConfig is kube-apiserver's --runtime-config: API versions to
	// turn on or off ("discovery.k8s.io/v1=false" makes a member that does
	// not serve EndpointSlices at v1, as a cluster before 1.21).
	RuntimeConfig string
	// NoWatchCache starts kube-apiserver with --watch-cache=false: every
	// watch is an etcd watch, so a watch resumed from a resource version
	// that CompactEtcd compacted away is answered 410 Gone at once (the
	// watch cache would serve it from its own history).
	NoWatchCache bool
}

// Start starts one member cluster per name, in parallel, and stops them when
// the test ends.
func Start(t testing.TB, names ...string) []*Cluster {
	t.Helper()
	return StartWith(t, Options{}, names...)
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options, names ...string) []*Cluster {
	t.Helper()
	assets, err := Assets()
	if err != nil {
		t.Fatal(err)
	}
	crds, err := mcsCRDs()
	if err != nil {
		t.Fatal(err)
	}
	clusters := make([]*Cluster, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			clusters[i], errs[i] = start(name, assets, crds, t.TempDir(), o)
		})
	}
	wg.Wait()
	for i, c := range clusters {
		if c != nil {
			t.Cleanup(func() {
				if err := c.stop(); err != nil {
					t.Logf("stop cluster %s: %v", c.Name, err)
				}
			})
		}
		if errs[i] != nil {
			t.Fatalf("start cluster %s: %v", names[i], errs[i])
		}
	}
	return clusters
}

func start(name, assets string, crds []*apiextensionsv1.CustomResourceDefinition, dir string, o Options) (*Cluster, error) {
	env := &envtest.Environment{
		BinaryAssetsDirectory:   assets,
		CRDInstallOptions:       envtest.CRDInstallOptions{CRDs: crds},
		ControlPlaneStopTimeout: 5 * time.Second,
	}
	// A fixed certificate folder keeps the serving certificate across a
	// restart of the API server (StopAPIServer, StartAPIServer).
	api := env.ControlPlane.GetAPIServer()
	api.CertDir = filepath.Join(dir, "apiserver")
	if err := os.MkdirAll(api.CertDir, 0o700); err != nil {
		return nil, err
	}
	if o.RuntimeConfig != "" {
		api.Configure().Set("runtime-config", o.RuntimeConfig)
	}
	if o.NoWatchCache {
		api.Configure().Set("watch-cache", "false")
	}
	if o.ReachableFromPods {
		// envtest picks a port only when it also picks the (loopback)
		// address, so pick the port here.
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		api.SecureServing.ListenAddr.Address = "0.0.0.0"
		api.SecureServing.ListenAddr.Port = strconv.Itoa(port)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, err
	}
	if o.ReachableFromPods {
		// Clients on this host dial loopback and verify the name the serving
		// certificate holds.
		u, err := url.Parse(cfg.Host)
		if err != nil {
			return nil, err
		}
		cfg.Host = "https://" + net.JoinHostPort("127.0.0.1", u.Port())
		cfg.TLSClientConfig.ServerName = "localhost"
	}
	c := &Cluster{Name: name, Config: cfg, env: env, up: true}
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return c, err
	}
	if c.MCS, err = mcsclient.NewForConfig(cfg); err != nil {
		return c, err
	}
	return c, nil
}

// freePort is a TCP port nothing listens on at the moment, on any address.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StopAPIServer stops the cluster's kube-apiserver, keeping etcd and its data:
// to clients the cluster becomes unreachable.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.up {
		return nil
	}
	c.up = false
	// A kube-apiserver with open watches may take longer than the stop
	// timeout to shut down gracefully; envtest then kills it. Either way the
	// cluster is gone for its clients, as in a crash.
	if err := c.env.ControlPlane.GetAPIServer().Stop(); err != nil && !strings.Contains(err.Error(), "timeout waiting for process") {
		return err
	}
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", u.Host, 200*time.Millisecond)
		if err != nil {
			return nil
		}
		conn.Close()
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("cluster %s: API server still listening on %s", c.Name, u.Host)
}

// StartAPIServer starts the kube-apiserver again on the same address, with
// the same certificates and data.
func (c *Cluster) StartAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up {
		return nil
	}
	if err := c.env.ControlPlane.GetAPIServer().Start(); err != nil {
		return err
	}
	c.up = true
	return nil
}

func (c *Cluster) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up = false
	return c.env.Stop()
}
