// Package nodetest runs real Kubernetes nodes for tests, as root on this
// machine: per node one containerd (its own root, state, socket and CNI
// configuration) and one kubelet (built by `make node-tools` into bin/k8s)
// registered with a real kube-apiserver from discovery/kube/kubetest.
//
// What a node is made of, and where each part lives:
//
//	kubetest kube-apiserver (0.0.0.0:port, ReachableFromPods)
//	   ▲ admin client certificate              ▲ pods: https://<Gateway>:port
//	kubelet --root-dir Dir/kubelet, cgroupRoot /hznt-<name>, 127.0.0.1:<free port>
//	   │ CRI over Dir/containerd.sock
//	containerd (Dir/containerd/{root,state}, restrict_oom_score_adj)
//	   │ CNI: bridge hznt-<name> (Gateway = first address of PodCIDR) + host-local + portmap
//	pods: pause sandbox (built here), images imported with ctr (pull policy Never)
//
// There is no scheduler, kube-proxy, DNS or controller-manager: pods set
// spec.nodeName and talk to pod IPs; the host (every kube-apiserver) is
// reached on the pod's own Gateway address. The kubelet listens on loopback
// only, so there is no `kubectl exec` or `logs`: Node.Exec and Node.PodLog go
// through containerd's CRI and the node's pod log folder instead.
//
// Every node of a test process holds an exclusive lock on LockFile, so tests
// of different packages take turns; whoever takes the lock first removes the
// leftovers of a crashed run (processes, mounts, bridges, cgroups, iptables
// chains and folders named with the hznt prefix). Node.Stop (registered with
// t.Cleanup) removes everything the node started.
//
// Timings measured on a 2-core machine: a node is Ready 1.2–2.6 s after
// StartNode (pause image build and import included) and stops in 0.2–1.6 s; a
// pod runs 1–4 s after it is created.
package nodetest
