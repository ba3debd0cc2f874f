package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
)

// memberFlags collects repeated --member flags:
//
//	--member name=east,network=net-east,kubeconfig=/etc/horizon/east.yaml[,context=c][,region=r][,zone=z]
type memberFlags []memberFlag

type memberFlag struct {
	name, network, kubeconfig, context string
	locality                           discovery.Locality
}

func (m *memberFlags) String() string {
	var out []string
	for _, f := range *m {
		out = append(out, f.name)
	}
	return strings.Join(out, ",")
}

func (m *memberFlags) Type() string { return "member" }

func (m *memberFlags) Set(v string) error {
	var f memberFlag
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || val == "" {
			return fmt.Errorf("%q: want key=value pairs", kv)
		}
		switch k {
		case "name":
			f.name = val
		case "network":
			f.network = val
		case "kubeconfig":
			f.kubeconfig = val
		case "context":
			f.context = val
		case "region":
			f.locality.Region = val
		case "zone":
			f.locality.Zone = val
		default:
			return fmt.Errorf("unknown key %q (want name, network, kubeconfig, context, region, zone)", k)
		}
	}
	if f.name == "" || f.network == "" || f.kubeconfig == "" {
		return errors.New("name, network and kubeconfig are required")
	}
	for _, o := range *m {
		if o.name == f.name {
			return fmt.Errorf("member %q given twice", f.name)
		}
	}
	*m = append(*m, f)
	return nil
}

// kubeConfig is serve's Kubernetes part.
type kubeConfig struct {
	members          memberFlags
	secretsNamespace string
	kubeconfig       string // the control plane's own cluster
	allowPlugins     bool
	allowInsecureTLS bool
	staleTTL         time.Duration
	mcs              bool
	clusterSetCIDRs  string
	leaseNamespace   string
	sliceEndpoints   int           // most endpoints of one MCS EndpointSlice
	stateDir         string        // where members' last known states are kept ("": nowhere)
	stateNamespace   string        // or the namespace of their ConfigMaps in the control plane's cluster
	syncWait         time.Duration // how long a member may take to sync before its persisted state is served
}

// trust is what the operator lets kubeconfigs ask for.
func (k *kubeConfig) trust() kube.Trust {
	return kube.Trust{AllowPlugins: k.allowPlugins, AllowInsecureTLS: k.allowInsecureTLS}
}

func (k *kubeConfig) enabled() bool { return len(k.members) > 0 || k.secretsNamespace != "" }

// memberConfigs loads every --member's kubeconfig.
func (k *kubeConfig) memberConfigs() ([]kube.MemberConfig, error) {
	var out []kube.MemberConfig
	for _, f := range k.members {
		rc, err := kube.LoadKubeconfigFile(f.kubeconfig, f.context, k.trust())
		if err != nil {
			return nil, fmt.Errorf("--member %s: %w", f.name, err)
		}
		out = append(out, kube.MemberConfig{
			Name: f.name, Network: f.network, Locality: f.locality, Rest: rc, Origin: "file " + f.kubeconfig,
		})
	}
	return out, nil
}

// controlPlane returns a client for the cluster Horizon runs in: --kubeconfig,
// or the in-cluster service account.
func (k *kubeConfig) controlPlane() (kubernetes.Interface, error) {
	rc, err := k.controlPlaneConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// controlPlaneConfig is the REST configuration of controlPlane's client.
func (k *kubeConfig) controlPlaneConfig() (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if k.kubeconfig != "" {
		rc, err = kube.LoadKubeconfigFile(k.kubeconfig, "", k.trust())
	} else if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		rc, err = rest.InClusterConfig()
	} else {
		return nil, errors.New("--member-secrets-namespace, --state-namespace and --workload-groups-crd need the control plane's cluster: run in a pod or give --kubeconfig")
	}
	if err != nil {
		return nil, fmt.Errorf("control plane cluster: %w", err)
	}
	return rc, nil
}

// flagMembers stops member Secrets from taking over a cluster configured by
// --member: such a Secret is refused (and counted) instead of rotating it.
type flagMembers struct {
	kube.Members
	reserved map[string]bool
}

func (f flagMembers) Set(cfg kube.MemberConfig) error {
	if f.reserved[cfg.Name] {
		return fmt.Errorf("cluster %q is configured by --member; a Secret cannot replace it", cfg.Name)
	}
	return f.Members.Set(cfg)
}

func (f flagMembers) Remove(name string) {
	if !f.reserved[name] {
		f.Members.Remove(name)
	}
}

// mcsMembers adapts the Source's members to the MCS controller's interface.
func mcsMembers(src *kube.Source) []mcs.Member {
	ms := src.SyncedMembers()
	out := make([]mcs.Member, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// kubeSources are serve's Kubernetes sources: the member clusters, the
// member Secrets watcher and the MCS controller (each nil when off).
type kubeSources struct {
	source     *kube.Source
	secrets    *kube.SecretWatcher
	controller *mcs.Controller
}

// sources builds the Kubernetes sources of `horizon serve`: the source
// publishes each ClusterSet with publish; the MCS controller reads the latest
// one (every gateway included) with latest.
func (k kubeConfig) sources(log *slog.Logger, reg prometheus.Registerer, trustDomain string, publish func(*discovery.ClusterSet), latest func() *discovery.ClusterSet) (*kubeSources, error) {
	out := &kubeSources{}
	if k.syncWait <= 0 {
		return nil, fmt.Errorf("--member-sync-wait %v: must be positive", k.syncWait)
	}
	if k.stateDir != "" && k.stateNamespace != "" {
		return nil, errors.New("--state-dir and --state-namespace exclude each other")
	}
	var source *kube.Source // the MCS controller's members come from it once built
	members, err := k.memberConfigs()
	if err != nil {
		return nil, err
	}
	var cp kubernetes.Interface
	if k.secretsNamespace != "" || k.stateNamespace != "" || k.kubeconfig != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		if cp, err = k.controlPlane(); err != nil {
			return nil, err
		}
	}
	var onChange func()
	if k.mcs {
		alloc, err := mcs.NewAllocator(strings.Split(k.clusterSetCIDRs, ",")...)
		if err != nil {
			return nil, fmt.Errorf("--clusterset-cidrs: %w", err)
		}
		election := mcs.Election{Namespace: k.leaseNamespace}
		if cp != nil {
			election.Client = cp.CoordinationV1()
		} else {
			log.Warn("no control plane cluster: the MCS controller writes without leader election; run a single replica")
		}
		controller, err := mcs.New(mcs.Config{
			Members: func() []mcs.Member { return mcsMembers(source) }, ClusterSet: latest, Allocator: alloc,
			Election: election, Logger: log, Metrics: mcs.NewMetrics(reg),
			Slices: mcs.SliceConfig{MaxEndpoints: k.sliceEndpoints},
		})
		if err != nil {
			return nil, err
		}
		onChange = controller.Notify
		out.controller = controller
	}
	opts := kube.SourceOptions{
		Logger: log, Metrics: kube.NewMetrics(reg), StaleTTL: k.staleTTL, OnChange: onChange,
		OnUpdate: publish, TrustDomain: trustDomain, SyncWait: k.syncWait,
	}
	switch {
	case k.stateDir != "":
		opts.State = &kube.FileStore{Dir: k.stateDir}
	case k.stateNamespace != "":
		// Every replica reads the ConfigMaps; the MCS controller's leader
		// writes them (without a controller, this replica does).
		store := &kube.ConfigMapStore{Kube: cp, Namespace: k.stateNamespace}
		if out.controller != nil {
			store.Writer = out.controller.IsLeader
		}
		opts.State = store
	}
	source = kube.NewSource(opts)
	reserved := map[string]bool{}
	for _, m := range members {
		reserved[m.Name] = true
		if err := source.Set(m); err != nil {
			return nil, err
		}
	}
	if k.secretsNamespace != "" {
		out.secrets = &kube.SecretWatcher{
			Kube: cp, Namespace: k.secretsNamespace, Members: flagMembers{Members: source, reserved: reserved},
			AllowPlugins: k.allowPlugins, AllowInsecureTLS: k.allowInsecureTLS, Logger: log, Metrics: kube.NewSecretMetrics(reg),
		}
	}
	out.source = source
	return out, nil
}
