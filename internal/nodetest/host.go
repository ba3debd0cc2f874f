package nodetest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Names on the host: every process, folder, bridge, cgroup and iptables chain
// a node makes carries the prefix, so a later run can find a crashed run's.
const (
	// BaseDir holds one folder per running node.
	BaseDir = "/tmp/hznt"
	// LockFile is held (flock) while a test process runs nodes.
	LockFile = "/tmp/hznt.lock"
	// prefix of bridges and cgroups; chainPrefix of iptables chains.
	prefix      = "hznt-"
	chainPrefix = "HZNT-"
)

// hostLock is the process-wide share of LockFile: taken by the first node,
// released with the last.
var hostLock struct {
	mu    sync.Mutex
	file  *os.File
	nodes int
}

// acquireHost takes LockFile (waiting for another test process to finish
// with its nodes) and, on first taking it, removes a crashed run's leftovers.
func acquireHost(logf func(string, ...any)) error {
	hostLock.mu.Lock()
	defer hostLock.mu.Unlock()
	if hostLock.nodes > 0 {
		hostLock.nodes++
		return nil
	}
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("node lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		logf("nodetest: another test process runs nodes; waiting for %s", LockFile)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return fmt.Errorf("node lock %s: %w", LockFile, err)
		}
	}
	// Holding the lock, anything named with the prefix is a crashed run's.
	if err := CleanStale(); err != nil {
		logf("nodetest: leftovers of an earlier run not all removed: %v", err)
	}
	if err := recordChains(); err != nil {
		f.Close()
		return fmt.Errorf("record the host's iptables chains: %w", err)
	}
	hostLock.file = f
	hostLock.nodes = 1
	return nil
}

// releaseHost gives back one node's share; the last removes the iptables
// chains the nodes added and releases LockFile.
func releaseHost() error {
	hostLock.mu.Lock()
	defer hostLock.mu.Unlock()
	hostLock.nodes--
	if hostLock.nodes > 0 || hostLock.file == nil {
		return nil
	}
	err := restoreChains()
	hostLock.file.Close() // releases the flock
	hostLock.file = nil
	return err
}

// CleanStale removes what a crashed run of nodes left on the host: processes
// whose command line names BaseDir (containerd, kubelet, containerd shims),
// mounts under BaseDir, links and cgroups named hznt-*, iptables chains named
// HZNT-* (and the jumps to them), the kubelet's and CNI's chains added since
// ChainsFile was written, and BaseDir itself. Only call it holding LockFile
// (StartNode does).
func CleanStale() error {
	var errs []error
	for _, pid := range processesMentioning(BaseDir + "/") {
		killGroupAndPID(pid)
	}
	// Processes left in our cgroups (containers of killed shims).
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + prefix + "*")
	for _, r := range uniqueCgroupRoots(roots) {
		errs = append(errs, removeCgroup(r))
	}
	errs = append(errs, unmountUnder(BaseDir))
	links, err := linksWithPrefix(prefix)
	errs = append(errs, err)
	for _, l := range links {
		errs = append(errs, run("ip", "link", "delete", l))
	}
	errs = append(errs, removeChains(chainPrefix), restoreChains())
	errs = append(errs, os.RemoveAll(BaseDir))
	return errors.Join(errs...)
}

func uniqueCgroupRoots(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		if n := filepath.Base(p); !seen[n] {
			seen[n] = true
			out = append(out, "/"+n)
		}
	}
	return out
}

// processesMentioning lists the processes whose command line contains s.
func processesMentioning(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killGroupAndPID sends SIGKILL to pid and to its process group when pid
// leads one.
func killGroupAndPID(pid int) {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// stopProcess stops a process started with its own process group: SIGTERM
// to the group, then SIGKILL after grace.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
	// Anything else left in the group (it exited, its children may not have).
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// cgroupHierarchies are the mounted cgroup hierarchies (v1 controllers, the
// named systemd one, the unified v2 one) under /sys/fs/cgroup.
func cgroupHierarchies() ([]string, error) {
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		dir := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
			out = append(out, dir)
		}
	}
	if len(out) == 0 {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.procs"); err == nil {
			return []string{"/sys/fs/cgroup"}, nil
		}
		return nil, errors.New("no cgroup hierarchy under /sys/fs/cgroup")
	}
	return out, nil
}

// makeCgroup creates the cgroup root (like "/hznt-west") in every hierarchy,
// as the kubelet's cgroupfs driver wants it to exist before it starts.
func makeCgroup(root string) error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		if err := os.MkdirAll(filepath.Join(h, root), 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", root, err)
		}
	}
	return nil
}

// removeCgroup kills every process left in the cgroup root and its children,
// in every hierarchy, and removes the cgroups, deepest first.
func removeCgroup(root string) error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	var dirs []string
	for _, h := range hs {
		top := filepath.Join(h, root)
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		var err error
		for try := 0; try < 50; try++ {
			for _, pid := range cgroupPIDs(d) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

func cgroupPIDs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmountUnder detaches every mount point under dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// linksWithPrefix lists the network links whose name starts with p.
func linksWithPrefix(p string) ([]string, error) {
	entries, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), p) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// removeChains deletes the filter table's chains named with p and the
// FORWARD jumps to them.
func removeChains(p string) error {
	out, err := exec.Command("iptables", "-w", "-S").Output()
	if err != nil {
		return fmt.Errorf("iptables -S: %w", err)
	}
	var chains []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], p) {
			chains = append(chains, f[1])
		}
	}
	var errs []error
	for _, c := range chains {
		errs = append(errs, deleteChain(c))
	}
	return errors.Join(errs...)
}

// deleteChain removes the FORWARD jumps to chain, then the chain.
func deleteChain(chain string) error {
	for exec.Command("iptables", "-w", "-D", "FORWARD", "-j", chain).Run() == nil {
	}
	return errors.Join(run("iptables", "-w", "-F", chain), run("iptables", "-w", "-X", chain))
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Leftovers lists what nodes leave on the host: processes naming BaseDir,
// mounts and files under it, links and cgroups named hznt-*, and iptables
// chains named HZNT-*, KUBE-* or CNI-* (the kubelet's and the portmap
// plugin's), sorted. Tests compare it before and after their nodes.
func Leftovers() ([]string, error) {
	var left []string
	for _, pid := range processesMentioning(BaseDir + "/") {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		left = append(left, fmt.Sprintf("process %d (%s)", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	if entries, err := os.ReadDir(BaseDir); err == nil {
		for _, e := range entries {
			left = append(left, "folder "+filepath.Join(BaseDir, e.Name()))
		}
	}
	links, err := linksWithPrefix(prefix)
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		left = append(left, "link "+l)
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/" + prefix + "*")
	for _, c := range cgroups {
		left = append(left, "cgroup "+c)
	}
	cs, err := chains()
	if err != nil {
		return nil, err
	}
	for c := range cs {
		if owned(c[strings.Index(c, "/")+1:]) {
			left = append(left, "iptables chain "+c)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(unescapeMount(f[4]), BaseDir+"/") {
			left = append(left, "mount "+f[4])
		}
	}
	sort.Strings(left)
	return left, nil
}
