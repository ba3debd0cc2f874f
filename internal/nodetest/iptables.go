package nodetest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
)

// The kubelet and the CNI portmap plugin add iptables chains shared by the
// whole host (KUBE-FIREWALL with jumps from INPUT and OUTPUT,
// KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT, CNI-HOSTPORT-*). acquireHost
// records the chains present before the first node (in ChainsFile) and
// releasing the last node removes the KUBE-*, CNI-* and HZNT-* chains that
// were not, with every rule jumping to them. A ChainsFile found at start is
// a crashed run's record, applied first.

// ChainsFile records the host's iptables chains from before the nodes.
const ChainsFile = "/tmp/hznt.chains.json"

var (
	chainTables   = []string{"filter", "nat", "mangle"}
	ownedPrefixes = []string{"KUBE-", "CNI-", chainPrefix}
)

// chains lists "table/chain" for every chain of chainTables.
func chains() (map[string]bool, error) {
	out := map[string]bool{}
	for _, t := range chainTables {
		b, err := exec.Command("iptables-save", "-t", t).Output()
		if err != nil {
			return nil, fmt.Errorf("iptables-save -t %s: %w", t, err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, ":") {
				out[t+"/"+strings.Fields(line[1:])[0]] = true
			}
		}
	}
	return out, nil
}

// recordChains writes the current chains to ChainsFile.
func recordChains() error {
	c, err := chains()
	if err != nil {
		return err
	}
	var list []string
	for k := range c {
		list = append(list, k)
	}
	sort.Strings(list)
	b, _ := json.Marshal(list)
	return os.WriteFile(ChainsFile, b, 0o600)
}

// restoreChains removes the owned chains not in ChainsFile, and the file.
// Without the file there is nothing to do.
func restoreChains() error {
	b, err := os.ReadFile(ChainsFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("%s: %w", ChainsFile, err)
	}
	before := map[string]bool{}
	for _, k := range list {
		before[k] = true
	}
	var errs []error
	for _, t := range chainTables {
		errs = append(errs, dropChains(t, before))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.Remove(ChainsFile)
}

// dropChains rewrites table t without the owned chains absent from before
// and the rules in or jumping to them (iptables-save, filter, iptables-restore
// of the table; other tables are untouched).
func dropChains(t string, before map[string]bool) error {
	b, err := exec.Command("iptables-save", "-t", t).Output()
	if err != nil {
		return fmt.Errorf("iptables-save -t %s: %w", t, err)
	}
	keep, changed := withoutChains(string(b), t, before)
	if !changed {
		return nil
	}
	cmd := exec.Command("iptables-restore", "-w")
	cmd.Stdin = strings.NewReader(keep)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore of table %s: %w: %s", t, err, out)
	}
	return nil
}

// withoutChains is the iptables-save output of table t without the owned
// chains absent from before (keys "table/chain"), their rules and the rules
// jumping to them; changed reports whether there was any.
func withoutChains(save, t string, before map[string]bool) (out string, changed bool) {
	drop := map[string]bool{}
	lines := strings.Split(save, "\n")
	for _, line := range lines {
		if strings.HasPrefix(line, ":") {
			c := strings.Fields(line[1:])[0]
			if !before[t+"/"+c] && owned(c) {
				drop[c] = true
			}
		}
	}
	if len(drop) == 0 {
		return save, false
	}
	var keep []string
	for _, line := range lines {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, ":") && drop[strings.Fields(line[1:])[0]]:
			continue
		case len(f) >= 2 && f[0] == "-A" && (drop[f[1]] || jumpsTo(f, drop)):
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n"), true
}

func owned(chain string) bool {
	for _, p := range ownedPrefixes {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

func jumpsTo(fields []string, chains map[string]bool) bool {
	for i := 0; i+1 < len(fields); i++ {
		if (fields[i] == "-j" || fields[i] == "-g") && chains[fields[i+1]] {
			return true
		}
	}
	return false
}
