package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"

	"github.com/horizonmesh/horizon/certs/workloadsvc"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/workload"
	"github.com/horizonmesh/horizon/xds"
)

// workloadsConfig is what serve's flags say about workloads outside
// Kubernetes.
type workloadsConfig struct {
	// file is --workloads: workload groups (and VM networks) served with
	// any source, Kubernetes members included.
	file string
	// crd is --workload-groups-crd: WorkloadGroup objects of the control
	// plane's cluster.
	crd bool
	// crdNamespaces is --workload-groups-namespace: the only namespaces
	// whose WorkloadGroups are read (empty: every namespace).
	crdNamespaces []string
	// crdStatus is --workload-groups-status: write each object's Accepted
	// condition.
	crdStatus      bool
	limits         workload.Limits
	reportInterval time.Duration
}

// workloads is serve's workload stage: the registry, the workloads file's
// watcher (nil without --workloads), and the registration API to register
// on the mTLS port (nil unless Horizon is the CA).
type workloads struct {
	registry *workload.Registry
	metrics  *workload.Metrics
	watcher  *file.Watcher
	crd      *workload.CRDWatcher // nil without --workload-groups-crd
	register func(*grpc.Server)
}

// setupWorkloads makes the registry and loads the workloads file once, so
// that the first ClusterSet has its groups.
func setupWorkloads(cfg workloadsConfig, kc *kubeConfig, reg prometheus.Registerer, log *slog.Logger) (*workloads, error) {
	m := workload.NewMetrics(reg)
	w := &workloads{metrics: m, registry: workload.New(workload.Options{
		Limits: cfg.limits, ReportInterval: cfg.reportInterval,
		Metrics: m, Log: log.With("component", "workloads"),
	})}
	if cfg.file != "" {
		cs, err := file.LoadWorkloads(cfg.file)
		if err != nil {
			return nil, fmt.Errorf("--workloads: %w", err)
		}
		w.registry.SetFile(cs)
		w.watcher = &file.Watcher{Path: cfg.file, Workloads: true, Logger: log.With("component", "workloads-file"), OnUpdate: w.registry.SetFile}
	}
	if len(cfg.crdNamespaces) > 0 && !cfg.crd {
		return nil, errors.New("--workload-groups-namespace needs --workload-groups-crd")
	}
	for _, ns := range cfg.crdNamespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("--workload-groups-namespace %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	if cfg.crd {
		rc, err := kc.controlPlaneConfig()
		if err != nil {
			return nil, err
		}
		client, err := dynamic.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("--workload-groups-crd: %w", err)
		}
		w.crd = &workload.CRDWatcher{Client: client, Namespaces: cfg.crdNamespaces, OnUpdate: w.registry.SetCRDGroups, Log: log.With("component", "workload-groups"), Rejected: workload.NewCRDMetrics(reg), WriteStatus: cfg.crdStatus}
	}
	return w, nil
}

// api makes the registration API when Horizon is the CA (port.signer),
// with the join key in the CA directory (created if missing).
//
// Horizon's own identity and the exact gateway identities (gateways) are
// never issued to a workload. With member clusters, a group with a
// tokenReviewCluster also admits a ServiceAccount token, reviewed as the
// certificate API reviews one (port.review, --token-audience).
func (w *workloads) api(port mtlsPort, td spiffeid.TrustDomain, ttl time.Duration, gateways []string, log *slog.Logger) error {
	if port.signer == nil {
		return nil
	}
	reserved := []spiffeid.ID{port.identity}
	for _, g := range gateways {
		if id, err := spiffeid.FromString(g); err == nil && !strings.Contains(g, "*") {
			reserved = append(reserved, id)
		}
	}
	key, err := workloadsvc.LoadJoinKey(port.caDir, true)
	if errors.Is(err, workloadsvc.ErrNoJoinKey) {
		// A CA directory mounted read-only (the chart's Secret) without a
		// join key: Horizon serves on, without the registration API.
		log.Warn("workload registration API off: the CA directory has no join key and Horizon cannot write one; put a 32-byte "+workloadsvc.JoinKeyFile+" into it to let VMs join",
			"dir", port.caDir, "error", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("--ca-dir: %w", err)
	}
	svc, err := workloadsvc.New(workloadsvc.Config{
		TrustDomain: td, Signer: port.signer, JoinKey: key, Registry: w.registry, MaxTTL: ttl, Reserved: reserved,
		Review:  port.review,
		Refused: w.metrics.Refused, Log: log.With("component", "workload-api"),
	})
	if err != nil {
		return err
	}
	w.register = svc.Register
	return nil
}

// handleDebug serves GET /debug/workloads: every registered instance, and
// why the last merge left anything out.
func (w *workloads) handleDebug(mux *http.ServeMux) {
	mux.Handle("GET /debug/workloads", http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		out := map[string]any{"instances": w.registry.Instances()}
		if err := w.registry.LastError(); err != nil {
			out["error"] = err.Error()
		}
		if w.crd != nil {
			out["rejectedObjects"] = w.crd.Errors()
		}
		writeJSON(rw, out)
	}))
}

// workloadSources maps each VM endpoint's host:port to "  <source>", what
// `horizon view` writes after its health.
func workloadSources(cs *discovery.ClusterSet) map[string]string {
	out := map[string]string{}
	for addr, origins := range indexEndpoints(cs) {
		for _, o := range origins {
			if o.workload != "" {
				out[addr] = "  " + o.workload
			}
		}
	}
	return out
}

// workloadTokenConfig is what `horizon workload token` is asked for.
type workloadTokenConfig struct {
	caDir, group, trustDomain string
	ttl                       time.Duration
}

func (cfg workloadTokenConfig) run(stdout io.Writer) error {
	td, err := spiffeid.TrustDomainFromString(cfg.trustDomain)
	if err != nil {
		return fmt.Errorf("--trust-domain: %w", err)
	}
	var k discovery.ServiceKey
	if err := k.UnmarshalText([]byte(cfg.group)); err != nil {
		return fmt.Errorf("--group: %w", err)
	}
	key, err := workloadsvc.LoadJoinKey(cfg.caDir, true)
	if err != nil {
		return fmt.Errorf("--ca-dir: %w", err)
	}
	tok, err := workloadsvc.IssueToken(key, td.Name(), k.String(), cfg.ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func newWorkloadCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "workload",
		Short: "workloads outside Kubernetes (VMs): join tokens for their agents",
	}
	var cfg workloadTokenConfig
	token := &cobra.Command{
		Use:   "token",
		Short: "print a join token for one workload group, for 'horizon agent --join-token-file' on its VMs",
		Long: `token prints a join token that lets 'horizon agent' on a VM register an
instance of ONE workload group (--group namespace/name) and obtain the
group's SVID, until --ttl passes. It is signed with the join key in --ca-dir
(created there if missing), the directory 'horizon serve --ca-dir' uses:
only that Horizon accepts it. Treat it as a secret.`,
		Example: `  horizon workload token --ca-dir ca --group shop/ratings-vms --ttl 1h > join.token`,
		Args:    noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "ca-dir", "group"); err != nil {
				return err
			}
			return cfg.run(cmd.OutOrStdout())
		}),
	}
	fs := token.Flags()
	fs.StringVar(&cfg.caDir, "ca-dir", "", "the CA directory of 'horizon serve --ca-dir' (required)")
	fs.StringVar(&cfg.group, "group", "", "the workload group, namespace/name (required)")
	fs.DurationVar(&cfg.ttl, "ttl", time.Hour, "how long the token may be used to join (at most 720h)")
	fs.StringVar(&cfg.trustDomain, "trust-domain", xds.DefaultTrustDomain.Name(), "SPIFFE trust domain of the mesh")
	cmd.AddCommand(token)
	return cmd
}
