package nodetest

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"syscall"
)

// containerdConfig is the node's containerd: its own root, state, sockets,
// runc root and network namespaces (all under Dir), the CRI plugin with
// restrict_oom_score_adj (without CAP_SYS_RESOURCE runc cannot lower a
// sandbox's OOM score, and every sandbox fails with "can't get final child's
// PID from pipe: EOF"), PauseImage as the sandbox image and the node's CNI
// configuration.
func containerdConfig(n *Node) string {
	d := func(p string) string { return strconv.Quote(filepath.Join(n.Dir, p)) }
	return fmt.Sprintf(`version = 2
root = %s
state = %s

[grpc]
  address = %s

[ttrpc]
  address = %s

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %s

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %s
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %s
    max_conf_num = 1
`, d("containerd/root"), d("containerd/state"), strconv.Quote(n.Socket), strconv.Quote(n.Socket+".ttrpc"),
		d("containerd/opt"), PauseImage, d("runc"), CNIBinDir, d("cni/net.d"))
}

// cniConfig is the node's pod network: the node's bridge with the gateway
// address, host-local addresses from PodCIDR (state under Dir), no
// masquerading (pods of other nodes see pod addresses), and portmap for
// hostPort.
func cniConfig(n *Node) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.Bridge, n.Bridge, filepath.Join(n.Dir, "cni/ipam"), n.PodCIDR.String(), n.Gateway.String())
}

// kubeletConfig is the node's kubelet: loopback only on a port of its own
// (no read-only or healthz port), cgroupfs under its own cgroup root, cgroup
// v1 and swap accepted, its own pod log folder, no static pods, the cluster
// DNS server when there is one (no host resolv.conf otherwise), and no image
// garbage collection or disk eviction (imported images cannot be pulled
// again).
func kubeletConfig(n *Node, port int, dns netip.Addr) string {
	clusterDNS := ""
	if dns.IsValid() {
		clusterDNS = fmt.Sprintf("clusterDomain: cluster.local\nclusterDNS: [%q]\n", dns)
	}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
staticPodPath: ""
resolvConf: ""
registerNode: true
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
%s`, port, n.cgroupRoot, n.Socket, filepath.Join(n.Dir, "pod-logs"), clusterDNS)
}

// sysProcAttr starts a node process in its own process group, so Stop can
// signal it with its children.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
