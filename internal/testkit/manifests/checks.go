package manifests

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/xds/bootstrap"
)

// PlaintextXDSPort is Horizon's plaintext xDS port: local development only.
const PlaintextXDSPort = 15010

// CheckBootstrapInThePod: every container that runs `horizon bootstrap`
// makes the bootstrap in its own pod, with the pod's name, namespace and IP
// from the downward API and no --id, so each proxy's node id is its own. It
// returns how many containers it checked.
func CheckBootstrapInThePod(t testing.TB, docs Docs) int {
	t.Helper()
	want := map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP"}
	found := 0
	for name, pod := range PodTemplates(docs) {
		for _, c := range AllContainers(pod) {
			if len(c.Args) == 0 || c.Args[0] != "bootstrap" {
				continue
			}
			found++
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--id") {
					t.Errorf("%s: container %s passes %s: every replica would share it", name, c.Name, a)
				}
			}
			got := map[string]string{}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
					got[e.Name] = e.ValueFrom.FieldRef.FieldPath
				}
			}
			for env, path := range want {
				if got[env] != path {
					t.Errorf("%s: container %s: env %s from %q, want fieldRef %s", name, c.Name, env, got[env], path)
				}
			}
		}
	}
	return found
}

// CheckNoPlaintextXDS: nothing exposes Horizon's plaintext xDS port or dials
// it. No Service port or target port is 15010, no container port is, and no
// container's arguments, command or environment name it. Every `horizon
// bootstrap` points its proxy at the mutual-TLS port, and a proxyless app
// whose bootstrap does runs with grpc-go's SPIFFE switch, without which
// grpc-go cannot verify Horizon there. It returns how many bootstraps it
// checked.
func CheckNoPlaintextXDS(t testing.TB, docs Docs) int {
	t.Helper()
	port := strconv.Itoa(PlaintextXDSPort)
	for file, list := range docs {
		for _, obj := range list {
			if s, ok := obj.(*corev1.Service); ok {
				for _, p := range s.Spec.Ports {
					if p.Port == PlaintextXDSPort || p.TargetPort.IntValue() == PlaintextXDSPort {
						t.Errorf("%s: Service %s exposes the plaintext xDS port: %+v", file, s.Name, p)
					}
				}
			}
		}
	}
	bootstraps := 0
	for name, pod := range PodTemplates(docs) {
		containers := AllContainers(pod)
		proxyless := false
		for _, c := range containers {
			for _, p := range c.Ports {
				if p.ContainerPort == PlaintextXDSPort {
					t.Errorf("%s: container %s has the plaintext xDS port: %+v", name, c.Name, p)
				}
			}
			words := append(append([]string{}, c.Command...), c.Args...)
			for _, e := range c.Env {
				words = append(words, e.Value)
			}
			for _, w := range words {
				if strings.Contains(w, port) {
					t.Errorf("%s: container %s names the plaintext xDS port: %q", name, c.Name, w)
				}
			}
			if len(c.Args) > 0 && c.Args[0] == "gateway" {
				if addr := FlagValues(c.Args, "--xds-address"); len(addr) != 1 || !strings.HasSuffix(addr[0], ":15012") || len(FlagValues(c.Args, "--cert-dir")) != 1 {
					t.Errorf("%s: container %s: gateway %q, want --xds-address on port 15012 with --cert-dir (mutual TLS)", name, c.Name, c.Args)
				}
			}
			if len(c.Args) == 0 || c.Args[0] != "bootstrap" {
				continue
			}
			bootstraps++
			addr := FlagValues(c.Args, "--mtls-address")
			if len(addr) != 1 || !strings.HasSuffix(addr[0], ":15012") || FlagValues(c.Args, "--xds-address") != nil {
				t.Errorf("%s: container %s: bootstrap %q, want --mtls-address on port 15012 and no --xds-address", name, c.Name, c.Args)
			}
			proxyless = proxyless || strings.Contains(strings.Join(c.Args, " "), "--role=proxyless")
		}
		if !proxyless {
			continue
		}
		for _, c := range containers {
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			if _, app := env["GRPC_XDS_BOOTSTRAP"]; app && env[bootstrap.EnvGRPCSPIFFE] != "true" {
				t.Errorf("%s: container %s reads a proxyless bootstrap on the mutual-TLS port without %s=true", name, c.Name, bootstrap.EnvGRPCSPIFFE)
			}
		}
	}
	return bootstraps
}

// proxyPathFlags are the flags of `horizon bootstrap` that name paths in the
// proxy's containers, not its own: the agent's files, the SPIRE agent's
// socket.
var proxyPathFlags = []string{"--cert-dir", "--sds-socket"}

// namedPaths are the absolute file paths a container's arguments, command
// and environment name (--flag=/path, /path, env value /path), except
// those of `horizon bootstrap`'s proxyPathFlags (see
// CheckFilesMountedAndWritten).
func namedPaths(c corev1.Container) []string {
	var paths []string
	words := append(append([]string{}, c.Command...), c.Args...)
	for _, e := range c.Env {
		words = append(words, e.Value)
	}
	for _, w := range words {
		if len(c.Args) > 0 && c.Args[0] == "bootstrap" && slices.ContainsFunc(proxyPathFlags, func(f string) bool { return strings.HasPrefix(w, f+"=") }) {
			continue
		}
		if _, v, ok := strings.Cut(w, "="); ok && strings.HasPrefix(w, "--") {
			w = v
		}
		if strings.HasPrefix(w, "/") {
			paths = append(paths, filepath.Clean(w))
		}
	}
	return paths
}

// outPaths are the paths a container writes: --out= (`horizon agent`'s
// old name of --cert-dir, and `horizon bootstrap`'s file), `horizon agent
// --cert-dir=`, or a shell redirect.
func outPaths(c corev1.Container) []string {
	out := FlagValues(c.Args, "--out")
	if len(c.Args) > 0 && c.Args[0] == "agent" {
		out = append(out, FlagValues(c.Args, "--cert-dir")...)
	}
	words := strings.Fields(strings.Join(append(append([]string{}, c.Command...), c.Args...), " "))
	for i, w := range words {
		if w == ">" && i+1 < len(words) {
			out = append(out, words[i+1])
		}
	}
	for i := range out {
		out[i] = filepath.Clean(out[i])
	}
	return out
}

// mountOf is the mount of c holding path (the longest mount path prefix),
// and path relative to it.
func mountOf(c corev1.Container, path string) (corev1.VolumeMount, string, bool) {
	var best corev1.VolumeMount
	rel, found := "", false
	for _, m := range c.VolumeMounts {
		mp := filepath.Clean(m.MountPath)
		if r, err := filepath.Rel(mp, path); err == nil && !strings.HasPrefix(r, "..") && (!found || len(mp) > len(best.MountPath)) {
			best, rel, found = m, r, true
		}
	}
	return best, rel, found
}

// related: one relative path is the other or inside it (a file in a
// directory written, or the directory of a file written).
func related(a, b string) bool {
	inside := func(x, dir string) bool { return dir == "." || x == dir || strings.HasPrefix(x, dir+"/") }
	return inside(a, b) || inside(b, a)
}

// CheckFilesMountedAndWritten: every file path a container's arguments or
// environment name is on a volume mounted in that container, and is either
// provided by the volume's source (Secret, ConfigMap, projected token, or
// the node: a hostPath or CSI volume such as the SPIRE agent's socket) or,
// on an emptyDir, written by some container of the pod that mounts it
// writable (--out or a redirect). The paths `horizon bootstrap`'s
// proxyPathFlags name are checked in the containers that read that
// bootstrap. It returns
// how many paths it checked.
func CheckFilesMountedAndWritten(t testing.TB, docs Docs) int {
	t.Helper()
	checked := 0
	for name, pod := range PodTemplates(docs) {
		volumes := map[string]corev1.Volume{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = v
		}
		containers := AllContainers(pod)
		check := func(c corev1.Container, path string) {
			checked++
			m, rel, ok := mountOf(c, path)
			if !ok {
				t.Errorf("%s: container %s names %s, on no volume it mounts", name, c.Name, path)
				return
			}
			v, ok := volumes[m.Name]
			if !ok {
				t.Errorf("%s: container %s mounts volume %s, which the pod does not have", name, c.Name, m.Name)
				return
			}
			if v.EmptyDir == nil {
				if v.Secret == nil && v.ConfigMap == nil && v.Projected == nil && v.DownwardAPI == nil && v.HostPath == nil && v.CSI == nil {
					t.Errorf("%s: container %s: %s is on volume %s, which is neither an emptyDir nor a Secret, ConfigMap, projected, hostPath or CSI volume", name, c.Name, path, m.Name)
				}
				return
			}
			for _, w := range containers {
				for _, out := range outPaths(w) {
					wm, wrel, ok := mountOf(w, out)
					if ok && wm.Name == m.Name && !wm.ReadOnly && related(rel, wrel) {
						return
					}
				}
			}
			t.Errorf("%s: container %s reads %s from the emptyDir %s, which no container writes", name, c.Name, path, m.Name)
		}
		for _, c := range containers {
			for _, p := range namedPaths(c) {
				check(c, p)
			}
			if len(c.Args) == 0 || c.Args[0] != "bootstrap" {
				continue
			}
			// The bootstrap's --cert-dir and --sds-socket are read by the
			// containers that mount the volume the bootstrap is written to.
			out := outPaths(c)
			if len(out) != 1 {
				t.Errorf("%s: container %s: bootstrap writes %q, want one --out", name, c.Name, out)
				continue
			}
			bm, _, ok := mountOf(c, out[0])
			if !ok {
				t.Errorf("%s: container %s writes %s on no volume", name, c.Name, out[0])
				continue
			}
			readers := 0
			for _, r := range containers {
				if rm, _, ok := mountOf(r, out[0]); !ok || rm.Name != bm.Name || r.Name == c.Name {
					continue
				}
				readers++
				for _, f := range proxyPathFlags {
					for _, p := range FlagValues(c.Args, f) {
						check(r, filepath.Clean(p))
					}
				}
			}
			if readers == 0 {
				t.Errorf("%s: container %s writes its bootstrap where no other container mounts it", name, c.Name)
			}
		}
	}
	return checked
}

// Ref names a Secret or ConfigMap: kind, namespace, name.
type Ref [3]string

// CheckReferencedObjects: every Secret and ConfigMap a Deployment of docs
// names (volumes, projected sources, env and envFrom references) is created
// by docs or in theirs (the objects the user creates). It returns how many
// references it checked.
func CheckReferencedObjects(t testing.TB, docs Docs, theirs map[Ref]bool) int {
	t.Helper()
	created := map[Ref]bool{}
	for r := range theirs {
		created[r] = true
	}
	for _, list := range docs {
		for _, obj := range list {
			switch o := obj.(type) {
			case *corev1.Secret:
				created[Ref{"Secret", o.Namespace, o.Name}] = true
			case *corev1.ConfigMap:
				created[Ref{"ConfigMap", o.Namespace, o.Name}] = true
			}
		}
	}
	refs := 0
	for name, d := range Deployments(docs) {
		need := func(kind, obj string) {
			refs++
			if !created[Ref{kind, d.Namespace, obj}] {
				t.Errorf("%s names %s %s/%s, which nothing creates and the user's objects do not list", name, kind, d.Namespace, obj)
			}
		}
		spec := d.Spec.Template.Spec
		for _, v := range spec.Volumes {
			switch {
			case v.Secret != nil:
				need("Secret", v.Secret.SecretName)
			case v.ConfigMap != nil:
				need("ConfigMap", v.ConfigMap.Name)
			case v.Projected != nil:
				for _, s := range v.Projected.Sources {
					if s.Secret != nil {
						need("Secret", s.Secret.Name)
					}
					if s.ConfigMap != nil {
						need("ConfigMap", s.ConfigMap.Name)
					}
				}
			}
		}
		for _, c := range AllContainers(spec) {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					need("Secret", e.ValueFrom.SecretKeyRef.Name)
				}
				if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					need("ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name)
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					need("Secret", e.SecretRef.Name)
				}
				if e.ConfigMapRef != nil {
					need("ConfigMap", e.ConfigMapRef.Name)
				}
			}
		}
	}
	return refs
}

// CheckMountedFilesReadable: every file of a Secret, ConfigMap or projected
// volume a container mounts is readable by the user it runs as. The kubelet
// writes these files owned by root, in group fsGroup when the pod sets one,
// with the volume's mode: so a non-root user reads them through the "other"
// bits, or through the group bits when fsGroup is one of its groups. It
// returns how many (container, file mode) pairs it checked.
func CheckMountedFilesReadable(t testing.TB, docs Docs) int {
	t.Helper()
	checked := 0
	for name, pod := range PodTemplates(docs) {
		psc := pod.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		modes := map[string][]int32{} // volume → its files' modes
		for _, v := range pod.Volumes {
			var items []int32
			var dm *int32
			switch {
			case v.Secret != nil:
				dm = v.Secret.DefaultMode
				for _, it := range v.Secret.Items {
					items = append(items, ptrOr(it.Mode, -1))
				}
			case v.ConfigMap != nil:
				dm = v.ConfigMap.DefaultMode
				for _, it := range v.ConfigMap.Items {
					items = append(items, ptrOr(it.Mode, -1))
				}
			case v.Projected != nil:
				dm = v.Projected.DefaultMode
				for _, s := range v.Projected.Sources {
					var its []corev1.KeyToPath
					switch {
					case s.Secret != nil:
						its = s.Secret.Items
					case s.ConfigMap != nil:
						its = s.ConfigMap.Items
					}
					for _, it := range its {
						items = append(items, ptrOr(it.Mode, -1))
					}
				}
			default:
				continue
			}
			list := []int32{ptrOr(dm, 0o644)}
			for _, m := range items {
				if m >= 0 {
					list = append(list, m)
				}
			}
			modes[v.Name] = list
		}
		for _, c := range AllContainers(pod) {
			uid, gids := psc.RunAsUser, []int64{}
			if psc.RunAsGroup != nil {
				gids = append(gids, *psc.RunAsGroup)
			}
			gids = append(gids, psc.SupplementalGroups...)
			if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
				uid = c.SecurityContext.RunAsUser
			}
			if c.SecurityContext != nil && c.SecurityContext.RunAsGroup != nil {
				gids = append(gids, *c.SecurityContext.RunAsGroup)
			}
			for _, m := range c.VolumeMounts {
				for _, mode := range modes[m.Name] {
					checked++
					switch {
					case uid != nil && *uid == 0:
					case mode&0o004 != 0:
					case psc.FSGroup != nil && mode&0o040 != 0:
						// fsGroup is a supplementary group of every container.
					default:
						t.Errorf("%s: container %s (uid %v, groups %v, fsGroup %v) cannot read volume %s's files, mode %#o", name, c.Name, fmtPtr(uid), gids, fmtPtr(psc.FSGroup), m.Name, mode)
					}
				}
			}
		}
	}
	return checked
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func fmtPtr(p *int64) string {
	if p == nil {
		return "unset"
	}
	return strconv.FormatInt(*p, 10)
}

// effectiveUser is the uid a container runs as when the manifest sets one.
func effectiveUser(pod corev1.PodSpec, c corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if pod.SecurityContext != nil {
		return pod.SecurityContext.RunAsUser
	}
	return nil
}

// CheckSVIDKeyReadable: `horizon agent` writes the SVID's private key 0600
// (certs.SVIDFiles), owned by the user it runs as, so every other container
// that mounts the agent's output volume must run as that same user, and the
// manifest must say which (an image's default user is not known here). It
// returns how many readers it checked.
func CheckSVIDKeyReadable(t testing.TB, docs Docs) int {
	t.Helper()
	checked := 0
	for name, pod := range PodTemplates(docs) {
		containers := AllContainers(pod)
		for _, agent := range containers {
			if len(agent.Args) == 0 || agent.Args[0] != "agent" {
				continue
			}
			out := outPaths(agent)
			if len(out) != 1 {
				t.Errorf("%s: agent %s writes %q, want one --out or --cert-dir", name, agent.Name, out)
				continue
			}
			am, _, ok := mountOf(agent, out[0])
			if !ok {
				t.Errorf("%s: agent %s writes %s on no volume", name, agent.Name, out[0])
				continue
			}
			writer := effectiveUser(pod, agent)
			for _, r := range containers {
				if m, _, ok := mountOf(r, out[0]); !ok || m.Name != am.Name || (len(r.Args) > 0 && r.Args[0] == "agent") {
					continue
				}
				if len(r.Args) > 0 && r.Args[0] == "bootstrap" {
					continue // names the files, does not read them
				}
				checked++
				reader := effectiveUser(pod, r)
				if reader != nil && *reader == 0 {
					continue
				}
				if writer == nil || reader == nil || *writer != *reader {
					t.Errorf("%s: container %s (uid %s) reads %s/%s, written 0600 by agent %s (uid %s): run both as one user", name, r.Name, fmtPtr(reader), out[0], certs.SVIDKeyFile, agent.Name, fmtPtr(writer))
				}
			}
		}
	}
	return checked
}
