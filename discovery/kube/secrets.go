package kube

// Member clusters from Secrets.
//
// The contract (README "Member clusters from Secrets", and
// examples/kubernetes/README.md):
//
//   - A member cluster Secret lives in the control plane's namespace and
//     carries the label multicluster.horizon.io/member=true. Other Secrets,
//     and Secrets in other namespaces, are never read.
//   - data.kubeconfig (required) says how to reach the member: a kubeconfig
//     whose current-context is used, with everything inline (see
//     LoadKubeconfig). Users with exec or auth-provider plugins are refused
//     unless the control plane allows plugins, and clusters with
//     insecure-skip-tls-verify unless it allows that (AllowInsecureTLS).
//   - Annotations: multicluster.horizon.io/cluster-name (default: the
//     Secret's name), multicluster.horizon.io/network (required), and
//     optionally multicluster.horizon.io/region and multicluster.horizon.io/zone,
//     the default locality of the member's endpoints.
//   - Creating such a Secret adds the member; changing its kubeconfig or
//     annotations rotates it, make-before-break (the new connection syncs
//     before it replaces the old one); deleting it, or removing its label,
//     removes the member. Other changes (labels, unrelated annotations,
//     resyncs) do nothing.
//   - A Secret that cannot be used (no kubeconfig, a broken one, a refused
//     plugin, no network, a bad cluster name) is refused: a warning log naming
//     the Secret and the reason, a Warning Event on the Secret, and
//     horizon_kube_member_secrets_invalid_total{reason}. A member already
//     running from an earlier good version of that Secret keeps running:
//     a bad edit never removes a cluster.
//   - Two Secrets naming the same cluster: the one that claimed it first (at
//     start, the older Secret) serves it; the other is refused
//     (reason duplicate_name) until the first is deleted or renamed.
//
// `horizon cluster add-secret` prints such a Secret for a member cluster.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/horizonmesh/horizon/discovery"
)

// The member cluster Secret's label, data key and annotations.
const (
	LabelMemberSecret     = "multicluster.horizon.io/member" // value "true"
	SecretKubeconfigKey   = "kubeconfig"
	AnnotationClusterName = "multicluster.horizon.io/cluster-name"
	AnnotationNetwork     = "multicluster.horizon.io/network"
	AnnotationRegion      = "multicluster.horizon.io/region"
	AnnotationZone        = "multicluster.horizon.io/zone"
)

// Reasons a member cluster Secret is refused (the metric's reason label and
// the Event's message).
const (
	ReasonKubeconfigMissing = "kubeconfig_missing"
	ReasonKubeconfigInvalid = "kubeconfig_invalid"
	ReasonPluginRefused     = "plugin_refused"
	ReasonInsecureTLS       = "insecure_tls_refused"
	ReasonNetworkMissing    = "network_missing"
	ReasonClusterName       = "cluster_name_invalid"
	ReasonDuplicateName     = "duplicate_name"
	ReasonMember            = "member_failed"
)

var secretReasons = []string{ReasonKubeconfigMissing, ReasonKubeconfigInvalid, ReasonPluginRefused, ReasonInsecureTLS,
	ReasonNetworkMissing, ReasonClusterName, ReasonDuplicateName, ReasonMember}

// Members is what the SecretWatcher drives; *Source satisfies it.
type Members interface {
	// Set adds a member, or rotates the one with the same name.
	Set(MemberConfig) error
	// Remove stops and drops a member.
	Remove(name string)
}

// SecretWatcher adds, rotates and removes member clusters as their Secrets
// come, change and go (the contract is at the top of this file). Run it once.
type SecretWatcher struct {
	Kube      kubernetes.Interface // the control plane's own cluster
	Namespace string               // the control plane's namespace
	Members   Members
	// AllowPlugins lets kubeconfigs use exec and auth-provider plugins,
	// which run programs inside the control plane.
	AllowPlugins bool
	// AllowInsecureTLS accepts kubeconfigs with insecure-skip-tls-verify
	// (test clusters).
	AllowInsecureTLS bool
	Logger           *slog.Logger
	Metrics          *SecretMetrics
	// Resync, when set, replays every Secret that often; unchanged Secrets
	// do nothing. 0 (the default) relies on the watch alone.
	Resync time.Duration

	once   sync.Once
	synced chan struct{}
}

// Synced is closed once the member Secrets present at start have each been
// handed to Members or refused: a control plane waits for it so that it
// never serves a ClusterSet missing a member it is configured to have. It is
// never closed if Run ends first (ctx done before the first list).
func (w *SecretWatcher) Synced() <-chan struct{} {
	w.once.Do(func() { w.synced = make(chan struct{}) })
	return w.synced
}

// Run watches the namespace's member Secrets until ctx is done, and returns
// once its informer and worker have ended. Informer callbacks only queue the
// Secret's name; one worker goroutine does the rest, in order.
func (w *SecretWatcher) Run(ctx context.Context) error {
	if w.Kube == nil || w.Namespace == "" || w.Members == nil {
		return errors.New("member secrets: need a client, a namespace and members")
	}
	w.Synced()
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("namespace", w.Namespace)

	factory := informers.NewSharedInformerFactoryWithOptions(w.Kube, w.Resync,
		informers.WithNamespace(w.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelMemberSecret + "=true" }))
	secrets := factory.Core().V1().Secrets()
	inf := secrets.Informer()
	queue := workqueue.NewTyped[string]()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("member secrets: %w", err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		switch {
		case ctx.Err() != nil, errors.Is(err, io.EOF), apierrors.IsResourceExpired(err), apierrors.IsGone(err):
			log.Debug("member secrets watch restarted", "error", err)
		default:
			log.Warn("cannot list or watch member cluster Secrets", "error", err)
		}
	}); err != nil {
		return fmt.Errorf("member secrets: %w", err)
	}

	factory.Start(ctx.Done())
	defer factory.Shutdown() // waits for the informer's goroutines
	defer queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil // stopped before the first list
	}

	wk := &secretWorker{
		w: w, log: log, lister: secrets.Lister(), queue: queue,
		secrets: map[string]*secretState{}, owners: map[string]string{},
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		wk.initial(ctx)
		close(w.synced)
		for wk.next(ctx) {
		}
	})
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
	return nil
}

// secretWorker is the state of one Run, touched only by its worker goroutine.
type secretWorker struct {
	w      *SecretWatcher
	log    *slog.Logger
	lister corev1listers.SecretLister
	queue  workqueue.TypedInterface[string]

	secrets map[string]*secretState // by Secret key (namespace/name)
	owners  map[string]string       // cluster name -> Secret key serving it
}

// secretState is what the worker knows of one member Secret.
type secretState struct {
	seen    string // hash of the version last looked at
	cluster string // the member this Secret serves, "" if none
	refused bool   // its latest version was refused
	claim   string // the cluster name it was refused for as a duplicate
}

// initial handles the Secrets present at start, oldest first, so that which
// of two Secrets claiming one cluster name wins does not depend on timing.
func (k *secretWorker) initial(ctx context.Context) {
	list, err := k.lister.List(labels.Everything())
	if err != nil {
		k.log.Error("cannot list member cluster Secrets from the cache", "error", err)
		return
	}
	slices.SortFunc(list, func(a, b *corev1.Secret) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	for _, s := range list {
		k.handle(ctx, s.Namespace+"/"+s.Name)
	}
}

func (k *secretWorker) next(ctx context.Context) bool {
	key, shutdown := k.queue.Get()
	if shutdown {
		return false
	}
	defer k.queue.Done(key)
	if ctx.Err() != nil {
		return false
	}
	k.handle(ctx, key)
	return true
}

// handle brings one Secret's member in line with the Secret.
func (k *secretWorker) handle(ctx context.Context, key string) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return
	}
	sec, err := k.lister.Secrets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		k.forget(key)
		return
	}
	if err != nil {
		k.log.Error("cannot read member cluster Secret from the cache", "secret", key, "error", err)
		return
	}
	st := k.secrets[key]
	if st == nil {
		st = &secretState{}
		k.secrets[key] = st
	}
	cfg, hash, reason, err := k.w.memberConfig(sec)
	if hash == st.seen {
		return // a resync, or a change that does not matter
	}
	st.seen, st.claim = hash, ""
	if err == nil {
		if owner, ok := k.owners[cfg.Name]; ok && owner != key {
			st.claim = cfg.Name
			reason, err = ReasonDuplicateName, fmt.Errorf("cluster %q is already served by Secret %s", cfg.Name, owner)
		}
	}
	if err == nil {
		if err = k.w.Members.Set(cfg); err != nil {
			reason = ReasonMember
		}
	}
	if err != nil {
		k.refuse(ctx, sec, st, reason, err)
		return
	}
	old := st.cluster
	st.cluster, st.refused = cfg.Name, false
	k.owners[cfg.Name] = key
	k.log.Info("member cluster Secret applied", "secret", key, "cluster", cfg.Name, "network", cfg.Network)
	if old != "" && old != cfg.Name { // renamed: the old name is a different cluster
		k.w.Members.Remove(old)
		k.release(old, key)
	}
	k.gauge()
}

// forget removes the member of a Secret that is gone (or lost its label).
func (k *secretWorker) forget(key string) {
	st, ok := k.secrets[key]
	if !ok {
		return
	}
	delete(k.secrets, key)
	if st.cluster != "" {
		k.w.Members.Remove(st.cluster)
		k.log.Info("member cluster Secret deleted; member removed", "secret", key, "cluster", st.cluster)
		k.release(st.cluster, key)
	}
	k.gauge()
}

// release frees a cluster name and retries the Secrets refused for it.
func (k *secretWorker) release(cluster, key string) {
	if k.owners[cluster] == key {
		delete(k.owners, cluster)
	}
	for other, st := range k.secrets {
		if st.claim == cluster {
			st.seen = "" // look again even though it has not changed
			k.queue.Add(other)
		}
	}
}

// refuse reports a Secret that cannot be used; its earlier member, if any,
// keeps running.
func (k *secretWorker) refuse(ctx context.Context, sec *corev1.Secret, st *secretState, reason string, err error) {
	st.refused = true
	key := sec.Namespace + "/" + sec.Name
	msg := "member cluster Secret refused"
	attrs := []any{"secret", key, "reason", reason, "error", err}
	if st.cluster != "" {
		msg = "member cluster Secret refused; its member keeps its previous configuration"
		attrs = append(attrs, "cluster", st.cluster)
	}
	k.log.Warn(msg, attrs...)
	k.w.Metrics.invalidSecret(reason)
	k.gauge()
	k.event(ctx, sec, reason, err)
}

// event marks the Secret with a Warning Event (kubectl describe shows it).
// Best effort: the log and the metric already tell.
func (k *secretWorker) event(ctx context.Context, sec *corev1.Secret, reason string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: sec.Name + ".", Namespace: sec.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "v1", Kind: "Secret", Namespace: sec.Namespace, Name: sec.Name,
			UID: sec.UID, ResourceVersion: sec.ResourceVersion,
		},
		Reason:         "MemberSecretRefused",
		Message:        truncate(reason+": "+err.Error(), 1024),
		Type:           corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "horizon"},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	if _, err := k.w.Kube.CoreV1().Events(sec.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		k.log.Debug("cannot record an Event on the member cluster Secret", "secret", sec.Namespace+"/"+sec.Name, "error", err)
	}
}

func (k *secretWorker) gauge() {
	if k.w.Metrics == nil {
		return
	}
	var serving, refused int
	for _, st := range k.secrets {
		if st.refused {
			refused++
		} else if st.cluster != "" {
			serving++
		}
	}
	k.w.Metrics.secrets.WithLabelValues("serving").Set(float64(serving))
	k.w.Metrics.secrets.WithLabelValues("refused").Set(float64(refused))
}

// memberConfig reads a member Secret. hash covers everything the member
// depends on, so that equal hashes mean nothing to do; when the Secret cannot
// be used, reason and err say why.
func (w *SecretWatcher) memberConfig(sec *corev1.Secret) (cfg MemberConfig, hash, reason string, err error) {
	name := sec.Annotations[AnnotationClusterName]
	if name == "" {
		name = sec.Name
	}
	kubeconfig, hasKubeconfig := sec.Data[SecretKubeconfigKey]
	cfg = MemberConfig{
		Name:     name,
		Network:  sec.Annotations[AnnotationNetwork],
		Locality: discovery.Locality{Region: sec.Annotations[AnnotationRegion], Zone: sec.Annotations[AnnotationZone]},
		Origin:   "secret " + sec.Namespace + "/" + sec.Name,
	}
	h := sha256.New()
	for _, s := range []string{cfg.Name, cfg.Network, cfg.Locality.Region, cfg.Locality.Zone, fmt.Sprint(hasKubeconfig)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(kubeconfig)
	hash = hex.EncodeToString(h.Sum(nil))

	switch {
	case len(validation.IsDNS1123Label(cfg.Name)) > 0:
		return cfg, hash, ReasonClusterName, fmt.Errorf("cluster name %q (annotation %s, or the Secret's name) is not a DNS label", cfg.Name, AnnotationClusterName)
	case cfg.Network == "":
		return cfg, hash, ReasonNetworkMissing, fmt.Errorf("no network: annotation %s is required", AnnotationNetwork)
	case len(kubeconfig) == 0:
		return cfg, hash, ReasonKubeconfigMissing, fmt.Errorf("no kubeconfig: data.%s is required", SecretKubeconfigKey)
	}
	rc, err := LoadKubeconfig(kubeconfig, "", Trust{AllowPlugins: w.AllowPlugins, AllowInsecureTLS: w.AllowInsecureTLS})
	if errors.Is(err, ErrPluginRefused) {
		return cfg, hash, ReasonPluginRefused, err
	}
	if errors.Is(err, ErrInsecureTLSRefused) {
		return cfg, hash, ReasonInsecureTLS, err
	}
	if err != nil {
		return cfg, hash, ReasonKubeconfigInvalid, err
	}
	cfg.Rest = rc
	return cfg, hash, "", nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// SecretMetrics are the SecretWatcher's metrics. A nil *SecretMetrics records
// nothing.
type SecretMetrics struct {
	invalid *prometheus.CounterVec
	secrets *prometheus.GaugeVec
}

// NewSecretMetrics registers the SecretWatcher's metrics with reg.
func NewSecretMetrics(reg prometheus.Registerer) *SecretMetrics {
	m := &SecretMetrics{
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_kube_member_secrets_invalid_total",
			Help: "Member cluster Secret versions refused, by reason; a member already running from an earlier version keeps running.",
		}, []string{"reason"}),
		secrets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_kube_member_secrets",
			Help: "Member cluster Secrets whose latest version serves a member (serving) or was refused (refused).",
		}, []string{"state"}),
	}
	for _, r := range secretReasons {
		m.invalid.WithLabelValues(r)
	}
	reg.MustRegister(m.invalid, m.secrets)
	return m
}

func (m *SecretMetrics) invalidSecret(reason string) {
	if m != nil {
		m.invalid.WithLabelValues(reason).Inc()
	}
}
