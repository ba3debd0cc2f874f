package nodetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Config describes one node.
type Config struct {
	// Name is the Node's name; it also names the node's bridge (hznt-<Name>),
	// cgroup root and folder, so it is short: 1–10 of [a-z0-9].
	Name string
	// Kube is the kube-apiserver the kubelet registers with, with
	// credentials allowed to act as a node (kubetest's admin config).
	Kube *rest.Config
	// PodCIDR is the node's pod network, like 10.210.1.0/24; its first
	// address is the bridge's, the pods' Gateway to the host.
	PodCIDR string
	// Labels are added to the Node, such as topology.kubernetes.io/region
	// and topology.kubernetes.io/zone.
	Labels map[string]string
	// ClusterDNS, when valid, is the nameserver of pods with dnsPolicy
	// ClusterFirst (domain cluster.local), such as a CoreDNS the test runs
	// on the host and pods reach on Gateway. Without it pods have no
	// nameserver (no DNS add-on here); hostAliases name addresses instead.
	ClusterDNS netip.Addr
	// Ready bounds the wait for the Node to be Ready; 90 s when 0.
	Ready time.Duration
}

var nameRE = regexp.MustCompile(`^[a-z0-9]{1,10}$`)

// Node is one running kubelet node and its containerd.
type Node struct {
	Name    string
	Dir     string       // the node's folder: configuration, state, logs
	Bridge  string       // the pods' bridge
	PodCIDR netip.Prefix // the pods' addresses
	Gateway netip.Addr   // the bridge's address: the host, as the node's pods reach it
	Socket  string       // containerd's (CRI) socket

	t          testing.TB
	kube       *rest.Config
	cgroupRoot string

	mu             sync.Mutex
	stopped        bool
	containerd     *exec.Cmd
	containerdDone chan struct{}
	kubelet        *exec.Cmd
	kubeletDone    chan struct{}
}

// StartNode starts a node and waits until its Node is Ready; it is stopped
// (Stop) when the test ends. It fails the test when the node cannot start;
// call Available first to skip where nodes cannot run.
func StartNode(t testing.TB, c Config) *Node {
	t.Helper()
	begin := time.Now()
	n, err := startNode(t, c)
	if n != nil {
		t.Cleanup(func() {
			if err := n.Stop(); err != nil {
				t.Errorf("stop node %s: %v", n.Name, err)
			}
		})
	}
	if err != nil {
		t.Fatalf("start node %s: %v", c.Name, err)
	}
	t.Logf("node %s: Ready in %v (pods %s, gateway %s)", n.Name, time.Since(begin).Round(10*time.Millisecond), n.PodCIDR, n.Gateway)
	return n
}

func startNode(t testing.TB, c Config) (*Node, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if !nameRE.MatchString(c.Name) {
		return nil, fmt.Errorf("name %q: want 1–10 of [a-z0-9] (it names a bridge)", c.Name)
	}
	cidr, err := netip.ParsePrefix(c.PodCIDR)
	if err != nil || !cidr.Addr().Is4() || cidr.Bits() > 29 {
		return nil, fmt.Errorf("pod CIDR %q: want an IPv4 prefix of at most /29", c.PodCIDR)
	}
	cidr = cidr.Masked()
	if c.Kube == nil {
		return nil, errors.New("no kube-apiserver config")
	}
	if c.Ready == 0 {
		c.Ready = 90 * time.Second
	}
	if err := acquireHost(t.Logf); err != nil {
		return nil, err
	}
	n := &Node{
		Name:       c.Name,
		Dir:        filepath.Join(BaseDir, c.Name),
		Bridge:     prefix + c.Name,
		PodCIDR:    cidr,
		Gateway:    cidr.Addr().Next(),
		t:          t,
		kube:       c.Kube,
		cgroupRoot: "/" + prefix + c.Name,
	}
	n.Socket = filepath.Join(n.Dir, "containerd.sock")
	if _, err := os.Stat(n.Dir); err == nil {
		_ = releaseHost()
		return nil, fmt.Errorf("%s exists: a node named %s already runs in this process", n.Dir, c.Name)
	}
	if err := n.start(c); err != nil {
		return n, err
	}
	return n, nil
}

func (n *Node) start(c Config) error {
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "runc"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return err
		}
	}
	// The host routes between pod networks (the CNI bridge plugin would
	// turn this on too; it is host-wide and stays on).
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	// The bridge exists, with the gateway address, before any pod: the
	// host is reachable on Gateway from the start (CNI reuses the bridge).
	if err := errors.Join(
		run("ip", "link", "add", "name", n.Bridge, "type", "bridge"),
		run("ip", "addr", "add", netip.PrefixFrom(n.Gateway, n.PodCIDR.Bits()).String(), "dev", n.Bridge),
		run("ip", "link", "set", n.Bridge, "up"),
	); err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	if err := makeCgroup(n.cgroupRoot); err != nil {
		return err
	}
	files := map[string]string{
		"containerd.toml":              containerdConfig(n),
		"cni/net.d/10-bridge.conflist": cniConfig(n),
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	files["kubelet.yaml"] = kubeletConfig(n, port, c.ClusterDNS)
	kubeconfig, err := kubeconfigFor(n.kube, n.kube.Host, "")
	if err != nil {
		return err
	}
	files["kubelet.kubeconfig"] = string(kubeconfig)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(n.Dir, name), []byte(data), 0o600); err != nil {
			return err
		}
	}

	if n.containerd, n.containerdDone, err = n.spawn("containerd", "containerd", "--config", filepath.Join(n.Dir, "containerd.toml")); err != nil {
		return err
	}
	if err := n.waitContainerd(30 * time.Second); err != nil {
		return err
	}
	pause, err := pauseImage(filepath.Join(n.Dir))
	if err != nil {
		return err
	}
	if err := n.ImportImage(pause); err != nil {
		return err
	}

	kubelet, err := Kubelet()
	if err != nil {
		return err
	}
	args := []string{
		"--config=" + filepath.Join(n.Dir, "kubelet.yaml"),
		"--kubeconfig=" + filepath.Join(n.Dir, "kubelet.kubeconfig"),
		"--root-dir=" + filepath.Join(n.Dir, "kubelet"),
		"--cert-dir=" + filepath.Join(n.Dir, "kubelet", "pki"),
		"--hostname-override=" + n.Name,
		"--node-ip=" + n.Gateway.String(), // the Node's InternalIP: the host as its pods see it
		"--v=1",
	}
	if len(c.Labels) > 0 {
		var kv []string
		for k, v := range c.Labels {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		args = append(args, "--node-labels="+strings.Join(kv, ","))
	}
	if n.kubelet, n.kubeletDone, err = n.spawn("kubelet", kubelet, args...); err != nil {
		return err
	}
	return n.waitReady(c.Ready)
}

// spawn starts a process in its own process group, logging to Dir/<name>.log.
func (n *Node) spawn(name, bin string, args ...string) (*exec.Cmd, chan struct{}, error) {
	log, err := os.Create(filepath.Join(n.Dir, name+".log"))
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	return cmd, done, nil
}

func (n *Node) waitContainerd(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := n.cri()
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
			cancel()
			conn.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-n.containerdDone:
			return fmt.Errorf("containerd exited:\n%s", n.logTail("containerd", 20))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not serving CRI after %v: %v\n%s", timeout, err, n.logTail("containerd", 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (n *Node) waitReady(timeout time.Duration) error {
	kube, err := kubernetes.NewForConfig(n.kube)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	last := "not registered"
	for time.Now().Before(deadline) {
		select {
		case <-n.kubeletDone:
			return fmt.Errorf("kubelet exited:\n%s", n.logTail("kubelet", 30))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		node, err := kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		cancel()
		if err == nil {
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady {
					if c.Status == corev1.ConditionTrue {
						return nil
					}
					last = c.Reason + ": " + c.Message
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("node not Ready after %v (%s); kubelet log:\n%s", timeout, last, n.logTail("kubelet", 30))
}

// cri connects to the node's containerd CRI service.
func (n *Node) cri() (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+n.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// ImportImage loads a docker or OCI image tarball (BuildImage's) into the
// node's containerd, where pods find it by its ref (imagePullPolicy Never).
func (n *Node) ImportImage(tarball string) error {
	out, err := exec.Command("ctr", "--address", n.Socket, "-n", "k8s.io", "images", "import", "--snapshotter", "overlayfs", tarball).CombinedOutput()
	if err != nil {
		return fmt.Errorf("node %s: import %s: %w: %s", n.Name, tarball, err, out)
	}
	return nil
}

// PodLog is what a pod's container wrote (stdout and stderr, in order) in
// its latest run, read from the node's pod log folder.
func (n *Node) PodLog(namespace, pod, container string) (string, error) {
	files, _ := filepath.Glob(filepath.Join(n.Dir, "pod-logs", namespace+"_"+pod+"_*", container, "*.log"))
	if len(files) == 0 {
		return "", fmt.Errorf("node %s: no log of %s/%s container %s", n.Name, namespace, pod, container)
	}
	sort.Slice(files, func(i, j int) bool { return restartOf(files[i]) < restartOf(files[j]) })
	b, err := os.ReadFile(files[len(files)-1])
	if err != nil {
		return "", err
	}
	return parseCRILog(b), nil
}

func restartOf(file string) int {
	var r int
	fmt.Sscanf(filepath.Base(file), "%d.log", &r)
	return r
}

// parseCRILog turns CRI log lines ("<time> <stream> <P|F> <text>") into the text.
func parseCRILog(b []byte) string {
	var out strings.Builder
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.SplitN(line, []byte(" "), 4)
		if len(f) < 3 {
			continue
		}
		if len(f) == 4 {
			out.Write(f[3])
		}
		if string(f[2]) != "P" {
			out.WriteByte('\n')
		}
	}
	return out.String()
}

// Exec runs cmd in a running container of a pod on this node (through CRI's
// ExecSync, what `ctr task exec` does) and returns its stdout, stderr and
// exit code; err is about reaching the container, not the exit code.
func (n *Node) Exec(ctx context.Context, namespace, pod, container string, cmd ...string) (stdout, stderr []byte, exitCode int32, err error) {
	conn, err := n.cri()
	if err != nil {
		return nil, nil, 0, err
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{
			"io.kubernetes.pod.namespace":  namespace,
			"io.kubernetes.pod.name":       pod,
			"io.kubernetes.container.name": container,
		},
	}})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("node %s: list containers: %w", n.Name, err)
	}
	if len(list.Containers) == 0 {
		return nil, nil, 0, fmt.Errorf("node %s: no running container %s in pod %s/%s", n.Name, container, namespace, pod)
	}
	timeout := int64(30)
	if d, ok := ctx.Deadline(); ok {
		timeout = max(1, int64(time.Until(d).Seconds()))
	}
	res, err := rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: list.Containers[0].Id, Cmd: cmd, Timeout: timeout})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("node %s: exec in %s/%s %s: %w", n.Name, namespace, pod, container, err)
	}
	return res.Stdout, res.Stderr, res.ExitCode, nil
}

// PodKubeconfig is a kubeconfig for a client in a pod on this node to reach
// the kube-apiserver of cfg (started with kubetest's ReachableFromPods): the
// server is https://<Gateway>:<cfg's port>, verified with cfg's CA and
// server name. The client authenticates with the token in tokenFile (a
// projected ServiceAccount token's path in the pod), or, when tokenFile is
// "", with cfg's own credentials (kubetest's admin client certificate: for a
// pod reaching another cluster's kube-apiserver, whose tokens this node's
// cannot issue).
func (n *Node) PodKubeconfig(cfg *rest.Config, tokenFile string) ([]byte, error) {
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("apiserver %q: %w", cfg.Host, err)
	}
	return kubeconfigFor(cfg, "https://"+net.JoinHostPort(n.Gateway.String(), u.Port()), tokenFile)
}

// kubeconfigFor writes cfg as a kubeconfig for server: cfg's CA and server
// name, and cfg's client certificate or, when tokenFile is set, that token.
func kubeconfigFor(cfg *rest.Config, server, tokenFile string) ([]byte, error) {
	if len(cfg.CAData) == 0 {
		return nil, errors.New("apiserver config has no CA data")
	}
	user := &clientcmdapi.AuthInfo{}
	if tokenFile != "" {
		user.TokenFile = tokenFile
	} else {
		if len(cfg.CertData) == 0 && cfg.BearerToken == "" {
			return nil, errors.New("apiserver config has no client certificate or token")
		}
		user.ClientCertificateData, user.ClientKeyData, user.Token = cfg.CertData, cfg.KeyData, cfg.BearerToken
	}
	kc := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"c": {Server: server, CertificateAuthorityData: cfg.CAData, TLSServerName: cfg.ServerName}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": user},
		Contexts:       map[string]*clientcmdapi.Context{"c": {Cluster: "c", AuthInfo: "u"}},
		CurrentContext: "c",
	}
	return clientcmd.Write(kc)
}

// Stop stops the node and removes everything it made: the kubelet, every
// pod sandbox and container (through CRI, which also releases their network),
// containerd and its shims, mounts under Dir, the bridge, the cgroups and Dir.
// It is safe to call more than once.
func (n *Node) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return nil
	}
	n.stopped = true
	begin := time.Now()
	if n.t.Failed() {
		n.t.Logf("node %s: kubelet log tail:\n%s\ncontainerd log tail:\n%s", n.Name, n.logTail("kubelet", 40), n.logTail("containerd", 20))
	}
	var errs []error
	stopProcess(n.kubelet, n.kubeletDone, 5*time.Second)
	if n.containerd != nil {
		errs = append(errs, n.removeSandboxes())
	}
	stopProcess(n.containerd, n.containerdDone, 5*time.Second)
	for _, pid := range processesMentioning(n.Dir + "/") { // shims
		killGroupAndPID(pid)
	}
	errs = append(errs, removeCgroup(n.cgroupRoot), unmountUnder(n.Dir))
	if _, err := os.Stat("/sys/class/net/" + n.Bridge); err == nil {
		errs = append(errs, run("ip", "link", "delete", n.Bridge))
	}
	errs = append(errs, os.RemoveAll(n.Dir), releaseHost())
	n.t.Logf("node %s: stopped in %v", n.Name, time.Since(begin).Round(10*time.Millisecond))
	return errors.Join(errs...)
}

// removeSandboxes stops and removes every pod sandbox through CRI, so that
// containerd tears down their containers, mounts and CNI networks.
func (n *Node) removeSandboxes() error {
	conn, err := n.cri()
	if err != nil {
		return err
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list sandboxes: %w", err)
	}
	var errs []error
	for _, s := range list.Items {
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop sandbox of %s/%s: %w", s.Metadata.GetNamespace(), s.Metadata.GetName(), err))
			continue
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove sandbox of %s/%s: %w", s.Metadata.GetNamespace(), s.Metadata.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// logTail is the last lines of Dir/<name>.log.
func (n *Node) logTail(name string, lines int) string {
	b, err := os.ReadFile(filepath.Join(n.Dir, name+".log"))
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// freePort is a TCP port nothing listens on at the moment.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
