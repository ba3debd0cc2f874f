package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"

	"github.com/horizonmesh/horizon/discovery"
)

// MemberConfig says how to reach one member cluster and where it sits.
type MemberConfig struct {
	// Name is the cluster's id unless the cluster publishes one in the
	// ClusterProperty cluster.clusterset.k8s.io.
	Name    string
	Network string
	// Locality is the default locality of the cluster's endpoints; Node
	// topology labels and EndpointSlice zones refine it.
	Locality discovery.Locality
	Rest     *rest.Config
	// Origin says where the configuration came from (a file, a Secret), for logs.
	Origin string
}

// State is a member cluster's connection state.
type State string

// Member cluster states.
const (
	Syncing State = "syncing" // started, initial list not complete
	Synced  State = "synced"  // caches current, API server reachable
	Stale   State = "stale"   // API server unreachable; serving its last known state
	Removed State = "removed" // no longer configured
	// Persisted: not synced since Horizon started; serving the state
	// persisted before the restart, stale since it was saved.
	Persisted State = "persisted"
)

// ClusterPropertyGVR is the about.k8s.io ClusterProperty resource, read with the
// dynamic client.
var ClusterPropertyGVR = schema.GroupVersionResource{Group: "about.k8s.io", Version: "v1alpha1", Resource: "clusterproperties"}

// ClusterIDProperty names the ClusterProperty that holds a cluster's id.
const ClusterIDProperty = "cluster.clusterset.k8s.io"

// Member watches one member cluster. Informer callbacks only record that
// something changed and nudge the Source; the Source reads the caches.
type Member struct {
	cfg     MemberConfig
	log     *slog.Logger
	notify  func()
	probe   time.Duration
	metrics *Metrics // set by the Source; nil records nothing

	kube kubernetes.Interface
	mcs  mcsclient.Interface
	dyn  dynamic.Interface
	http *http.Client

	factory    informers.SharedInformerFactory
	mcsFactory mcsinformers.SharedInformerFactory
	services   cache.SharedIndexInformer
	slices     cache.SharedIndexInformer
	exports    cache.SharedIndexInformer
	imports    cache.SharedIndexInformer
	pods       cache.SharedIndexInformer
	nodes      cache.SharedIndexInformer
	namespaces cache.SharedIndexInformer

	mu         sync.Mutex
	id         string
	state      State
	synced     bool // initial sync done, ever
	staleSince time.Time
	lastEvent  time.Time
	pending    time.Time // first event not yet taken into a snapshot
	resolved   map[string][]string
	failures   int
	// gen counts what may change the member's snapshot: informer events
	// (counted after the informer's store holds them), the adopted cluster
	// id, the resolved gateway addresses. last is the snapshot built at a
	// gen, reused while gen stays: a change in one member does not rebuild
	// the others.
	gen  uint64
	last *memberSnapshot
	// apiProblems are resources the member does not serve (watchError).
	apiProblems map[cache.SharedIndexInformer]apiProblem
	// refused are the resources the API server refuses Horizon (401, 403),
	// with the reason: the member is stale until each lists again.
	refused map[schema.GroupVersionResource]string
	// builds and snapshots count Build calls and Snapshot calls (tests).
	builds, snapshots int
}

// memberSnapshot is a Snapshot kept for reuse; cluster is never handed out,
// only copies of it (discovery.New normalises what it is given in place).
type memberSnapshot struct {
	gen      uint64
	cluster  discovery.Cluster
	problems []Problem
}

// NewMember prepares a watcher; Run starts it. notify is called, without
// blocking, whenever the member's state or objects change.
func NewMember(cfg MemberConfig, log *slog.Logger, notify func()) (*Member, error) {
	if cfg.Name == "" || cfg.Network == "" || cfg.Rest == nil {
		return nil, fmt.Errorf("member %q: needs a name, a network and a connection", cfg.Name)
	}
	rc := rest.CopyConfig(cfg.Rest)
	rc.Timeout = 0 // watches are long; requests are bounded by contexts
	// A dialer of its own keeps the member's connections out of client-go's
	// shared transport cache, so that stopping the member closes them.
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	rc.Dial = dialer.DialContext
	// m is made below; the transport counts its informers' relists.
	var m *Member
	counter := &relistCounter{collections: map[string]bool{}, relisted: func() {
		if m.HasSynced() {
			m.metrics.relist(m.cfg.Name)
		}
	}}
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })
	httpClient, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", cfg.Name, err)
	}
	kube, err := kubernetes.NewForConfigAndClient(rc, httpClient)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", cfg.Name, err)
	}
	mcs, err := mcsclient.NewForConfigAndClient(rc, httpClient)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", cfg.Name, err)
	}
	dyn, err := dynamic.NewForConfigAndClient(rc, httpClient)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", cfg.Name, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m = &Member{
		cfg: cfg, log: log.With("cluster", cfg.Name), notify: notify, probe: 2 * time.Second,
		kube: kube, mcs: mcs, dyn: dyn, http: httpClient, id: cfg.Name, state: Syncing,
	}
	m.factory = informers.NewSharedInformerFactory(kube, 0)
	m.mcsFactory = mcsinformers.NewSharedInformerFactory(mcs, 0)
	m.services = m.factory.Core().V1().Services().Informer()
	m.slices = m.factory.Discovery().V1().EndpointSlices().Informer()
	m.nodes = m.factory.Core().V1().Nodes().Informer()
	m.namespaces = m.factory.Core().V1().Namespaces().Informer()
	m.pods = m.factory.Core().V1().Pods().Informer()
	// Keep only what Horizon reads of a Pod: its identity and whether its
	// sidecar accepts mutual TLS.
	if err := m.pods.SetTransform(trimPod); err != nil {
		return nil, err
	}
	m.exports = m.mcsFactory.InformerFor(&mcsv1beta1.ServiceExport{}, func(c mcsclient.Interface, resync time.Duration) cache.SharedIndexInformer {
		return mcsInformer(&mcsv1beta1.ServiceExport{}, resync,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return c.MulticlusterV1beta1().ServiceExports("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return c.MulticlusterV1beta1().ServiceExports("").Watch(ctx, o)
			})
	})
	m.imports = m.mcsFactory.InformerFor(&mcsv1beta1.ServiceImport{}, func(c mcsclient.Interface, resync time.Duration) cache.SharedIndexInformer {
		return mcsInformer(&mcsv1beta1.ServiceImport{}, resync,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return c.MulticlusterV1beta1().ServiceImports("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return c.MulticlusterV1beta1().ServiceImports("").Watch(ctx, o)
			})
	})
	for inf, gvr := range m.resources() {
		counter.collections[collectionPath(gvr)] = true
		if err := inf.SetWatchErrorHandlerWithContext(m.watchError(inf, gvr)); err != nil {
			return nil, err
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { m.touch() },
		UpdateFunc: func(any, any) { m.touch() },
		DeleteFunc: func(any) { m.touch() },
	}
	for _, inf := range m.informers() {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// mcsInformer is an informer of an MCS API type whose lists and watches
// take the informer's context. The MCS API's generated informers call the
// API with context.TODO, so a list retrying an unavailable server (a
// Retry-After sleep) outlived Member.Run; these stop with it.
func mcsInformer(obj runtime.Object, resync time.Duration, list cache.ListWithContextFunc, watchFn cache.WatchFuncWithContext) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(&cache.ListWatch{ListWithContextFunc: list, WatchFuncWithContext: watchFn}, obj, resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

func (m *Member) informers() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{m.services, m.slices, m.nodes, m.namespaces, m.pods, m.exports, m.imports}
}

// resources maps each informer to the API resource (and version) it lists.
func (m *Member) resources() map[cache.SharedIndexInformer]schema.GroupVersionResource {
	mcs := mcsv1beta1.SchemeGroupVersion
	return map[cache.SharedIndexInformer]schema.GroupVersionResource{
		m.services:   corev1.SchemeGroupVersion.WithResource("services"),
		m.slices:     discoveryv1.SchemeGroupVersion.WithResource("endpointslices"),
		m.nodes:      corev1.SchemeGroupVersion.WithResource("nodes"),
		m.namespaces: corev1.SchemeGroupVersion.WithResource("namespaces"),
		m.pods:       corev1.SchemeGroupVersion.WithResource("pods"),
		m.exports:    mcs.WithResource("serviceexports"),
		m.imports:    mcs.WithResource("serviceimports"),
	}
}

// ReasonAPINotServed is the Problem reason of a resource the member's API
// server does not serve at the version Horizon reads (an older or newer
// cluster, MCS CRDs of another version).
const ReasonAPINotServed = "api_version_not_served"

// Reasons a member is stale while its API server answers: it refuses
// Horizon's credentials (401) or their rights (403). They are also
// horizon_kube_list_watch_errors_total's reason label, with ReasonOther.
const (
	ReasonForbidden    = "forbidden"
	ReasonUnauthorized = "unauthorized"
	ReasonOther        = "other"
)

// apiProblem is a resource an informer cannot list, and the informer's
// resource version when that was seen: a later successful list changes it.
type apiProblem struct {
	problem Problem
	rv      string
}

// watchError keeps client-go's handling of a failed list or watch, and names
// a resource the member does not serve, with the versions it does serve the
// resource at, as a Problem: logged, counted in horizon_kube_invalid_objects
// until a list succeeds. A member that never listed it waits (the Source
// publishes no view without it); what an informer listed before keeps
// serving.
func (m *Member) watchError(inf cache.SharedIndexInformer, gvr schema.GroupVersionResource) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		switch {
		case apierrors.IsForbidden(err):
			m.refuse(gvr, ReasonForbidden, err)
			return
		case apierrors.IsUnauthorized(err):
			m.refuse(gvr, ReasonUnauthorized, err)
			return
		}
		m.metrics.listWatchError(m.cfg.Name, ReasonOther)
		if !apierrors.IsNotFound(err) {
			return
		}
		msg := fmt.Sprintf("the member's API server does not serve %s at %s (%s); Horizon reads this version", gvr.Resource, gvr.GroupVersion(), m.servedVersions(gvr))
		p := Problem{Kind: "APIResource", Name: gvr.Resource + "." + gvr.GroupVersion().String(), Reason: ReasonAPINotServed, Message: msg}
		m.mu.Lock()
		if m.apiProblems == nil {
			m.apiProblems = map[cache.SharedIndexInformer]apiProblem{}
		}
		old, known := m.apiProblems[inf]
		m.apiProblems[inf] = apiProblem{problem: p, rv: inf.LastSyncResourceVersion()}
		m.mu.Unlock()
		if !known || old.problem != p {
			m.log.Error("member cluster does not serve a resource Horizon reads; the member waits for it", "resource", gvr.String(), "detail", msg)
			m.notify()
		}
	}
}

// refuse records that the API server refuses Horizon a resource. The
// informers keep what they listed and client-go retries with backoff; its
// /readyz still answers (it is public), so without this the member would
// pass for synced while nothing of it moves. It becomes stale instead (its
// last known state served, --stale-ttl running) until checkHealth lists
// every refused resource again.
func (m *Member) refuse(gvr schema.GroupVersionResource, reason string, err error) {
	m.metrics.listWatchError(m.cfg.Name, reason)
	m.mu.Lock()
	if m.refused == nil {
		m.refused = map[schema.GroupVersionResource]string{}
	}
	old, known := m.refused[gvr]
	m.refused[gvr] = reason
	synced := m.synced
	m.mu.Unlock()
	if !known || old != reason {
		m.log.Error("member cluster refuses Horizon a resource; serving its last known state until it is allowed again",
			"resource", gvr.Resource+"."+gvr.GroupVersion().String(), "reason", reason, "error", err)
	}
	if synced {
		m.setState(Stale)
	}
}

// Reason is why the member's API server refuses Horizon a resource
// (ReasonUnauthorized before ReasonForbidden), or "" if it refuses none: a
// synced member is stale for it, one that never synced waits for it.
func (m *Member) Reason() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	reason := ""
	for _, r := range m.refused {
		if r == ReasonUnauthorized || reason == "" {
			reason = r
		}
	}
	return reason
}

// recheckRefused lists the refused resources (one object each) until one is
// still refused, and forgets those the API server allows again; it reports
// whether any is still refused. While refused, that is one request a probe.
func (m *Member) recheckRefused(ctx context.Context) bool {
	m.mu.Lock()
	refused := slices.Collect(maps.Keys(m.refused))
	m.mu.Unlock()
	for _, gvr := range refused {
		_, err := m.dyn.Resource(gvr).List(withoutRelistCount(ctx), metav1.ListOptions{Limit: 1})
		// Only an answer other than a refusal clears it: a timeout or the
		// client's rate limiter says nothing about the rights.
		var status apierrors.APIStatus
		if err != nil && (!errors.As(err, &status) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)) {
			return true // one is enough; the others are asked once it is allowed
		}
		m.mu.Lock()
		delete(m.refused, gvr)
		m.mu.Unlock()
		m.log.Info("member cluster allows Horizon the resource again", "resource", gvr.Resource+"."+gvr.GroupVersion().String())
	}
	return false
}

// servedVersions says at which versions the member serves a resource.
func (m *Member) servedVersions(gvr schema.GroupVersionResource) string {
	groups, err := m.kube.Discovery().ServerGroups()
	if err != nil {
		return "cannot list its API groups: " + err.Error()
	}
	var vs []string
	for _, g := range groups.Groups {
		if g.Name != gvr.Group {
			continue
		}
		for _, v := range g.Versions {
			list, err := m.kube.Discovery().ServerResourcesForGroupVersion(v.GroupVersion)
			if err != nil {
				continue
			}
			if slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == gvr.Resource }) {
				vs = append(vs, v.Version)
			}
		}
	}
	if len(vs) == 0 {
		return fmt.Sprintf("it serves %s at no version", gvr.Resource)
	}
	return fmt.Sprintf("it serves %s at %s", gvr.Resource, strings.Join(vs, ", "))
}

// APIProblems are the resources the member does not serve at the version
// Horizon reads, sorted; a resource drops out once its informer lists it.
func (m *Member) APIProblems() []Problem {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Problem
	for inf, ap := range m.apiProblems {
		if inf.LastSyncResourceVersion() != ap.rv {
			delete(m.apiProblems, inf)
			continue
		}
		out = append(out, ap.problem)
	}
	slices.SortFunc(out, func(a, b Problem) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// trimPod replaces a Pod with the fields Horizon uses.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, Labels: pod.Labels, ResourceVersion: pod.ResourceVersion, UID: pod.UID},
		Spec:       corev1.PodSpec{ServiceAccountName: pod.Spec.ServiceAccountName},
	}, nil
}

func (m *Member) touch() {
	m.mu.Lock()
	m.gen++
	m.lastEvent = time.Now()
	if m.pending.IsZero() {
		m.pending = m.lastEvent
	}
	m.mu.Unlock()
	m.notify()
}

// Run watches the cluster until ctx is done, then stops every informer and
// returns when their goroutines have ended.
func (m *Member) Run(ctx context.Context) error {
	m.readClusterID(ctx)
	m.factory.Start(ctx.Done())
	m.mcsFactory.Start(ctx.Done())
	defer utilnet.CloseIdleConnectionsFor(m.http.Transport) // after the informers have stopped
	defer m.mcsFactory.Shutdown()
	defer m.factory.Shutdown()

	syncs := make([]cache.InformerSynced, 0, 7)
	for _, inf := range m.informers() {
		syncs = append(syncs, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return nil // stopped before the first sync
	}
	m.setState(Synced)
	m.log.Info("member cluster synced", "id", m.ID(), "origin", m.cfg.Origin)

	probe := time.NewTicker(m.probe)
	defer probe.Stop()
	resolve := time.NewTicker(30 * time.Second)
	defer resolve.Stop()
	m.resolveGateways(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-probe.C:
			m.checkHealth(ctx)
		case <-resolve.C:
			m.resolveGateways(ctx)
		}
	}
}

// readClusterID adopts the id the cluster publishes about itself, if any.
func (m *Member) readClusterID(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	obj, err := m.dyn.Resource(ClusterPropertyGVR).Get(ctx, ClusterIDProperty, metav1.GetOptions{})
	switch {
	case err == nil:
		if v, _, _ := unstructuredString(obj.Object, "spec", "value"); v != "" && v != m.cfg.Name {
			m.log.Info("cluster publishes its id; using it", "configured", m.cfg.Name, "id", v)
			m.mu.Lock()
			m.id = v
			m.gen++
			m.mu.Unlock()
		}
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
	default:
		m.log.Warn("cannot read ClusterProperty; using the configured name", "error", err)
	}
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	var cur any = obj
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = mm[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

// checkHealth asks the API server whether it is ready. Two failures in a row
// make the member stale; its caches keep the last known state meanwhile. A
// member whose API server refuses Horizon a resource (refuse) stays stale
// until that resource lists again.
func (m *Member) checkHealth(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, m.probe)
	defer cancel()
	err := m.kube.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return
	}
	m.mu.Lock()
	if err != nil {
		m.failures++
	} else {
		m.failures = 0
	}
	failures := m.failures
	m.mu.Unlock()
	refused := err == nil && m.recheckRefused(ctx)
	switch {
	case err != nil && failures == 2:
		m.log.Warn("member cluster unreachable; serving its last known state", "error", err)
		m.setState(Stale)
	case refused:
		// Stays stale: refuse made it so.
	case err == nil && m.State() == Stale:
		m.log.Info("member cluster reachable again")
		m.setState(Synced)
	}
}

func (m *Member) setState(s State) {
	m.mu.Lock()
	changed := m.state != s
	m.state = s
	switch s {
	case Synced:
		m.synced = true
		m.staleSince = time.Time{}
	case Stale:
		if m.staleSince.IsZero() {
			m.staleSince = time.Now()
		}
	}
	m.mu.Unlock()
	if changed {
		m.notify()
	}
}

// resolveGateways looks up the host names of load-balanced gateways, so that
// proxies get addresses (EDS cannot carry names).
func (m *Member) resolveGateways(ctx context.Context) {
	var hosts []string
	for _, obj := range m.services.GetStore().List() {
		svc := obj.(*corev1.Service)
		if svc.Labels[LabelGatewayNetwork] == "" {
			continue
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.Hostname != "" {
				hosts = append(hosts, ing.Hostname)
			}
		}
	}
	resolved := map[string][]string{}
	for _, h := range hosts {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := net.DefaultResolver.LookupHost(lctx, h)
		cancel()
		if err != nil {
			m.log.Warn("cannot resolve gateway host name", "host", h, "error", err)
			continue
		}
		slices.Sort(addrs)
		resolved[h] = addrs
	}
	m.mu.Lock()
	changed := !maps.EqualFunc(m.resolved, resolved, slices.Equal)
	m.resolved = resolved
	if changed {
		m.gen++
	}
	m.mu.Unlock()
	if changed {
		m.notify()
	}
}

// ID is the cluster's id: its ClusterProperty, or the configured name.
func (m *Member) ID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

// Config returns the member's configuration.
func (m *Member) Config() MemberConfig { return m.cfg }

// State returns the member's connection state.
func (m *Member) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// HasSynced reports whether the member ever completed its initial sync.
func (m *Member) HasSynced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.synced
}

// StaleSince is when the member became stale (zero when it is not).
func (m *Member) StaleSince() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.staleSince
}

// LastEvent is when an informer last reported a change.
func (m *Member) LastEvent() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastEvent
}

// Snapshot converts the member's caches into its part of the ClusterSet. lag
// is how long the oldest change it includes waited for it (0 if none).
func (m *Member) Snapshot() (c discovery.Cluster, problems []Problem, lag time.Duration) {
	cfg := m.cfg
	m.mu.Lock()
	cfg.Name = m.id
	resolved, gen, last := m.resolved, m.gen, m.last
	if !m.pending.IsZero() {
		lag = time.Since(m.pending)
		m.pending = time.Time{}
	}
	m.snapshots++
	m.mu.Unlock()
	// gen is read before the stores are listed: an event that lands while
	// they are, counts after it, so the next Snapshot builds again.
	if last != nil && last.gen == gen {
		return last.cluster.Clone(), last.problems, lag
	}
	o := Objects{Pods: map[string]*PodInfo{}, Nodes: map[string]*corev1.Node{}, Resolved: resolved}
	for _, obj := range m.services.GetStore().List() {
		o.Services = append(o.Services, obj.(*corev1.Service))
	}
	for _, obj := range m.slices.GetStore().List() {
		o.Slices = append(o.Slices, obj.(*discoveryv1.EndpointSlice))
	}
	for _, obj := range m.exports.GetStore().List() {
		o.Exports = append(o.Exports, obj.(*mcsv1beta1.ServiceExport))
	}
	o.Imports = m.ServiceImports()
	for _, obj := range m.nodes.GetStore().List() {
		n := obj.(*corev1.Node)
		o.Nodes[n.Name] = n
	}
	for _, obj := range m.pods.GetStore().List() {
		p := obj.(*corev1.Pod)
		o.Pods[p.Namespace+"/"+p.Name] = &PodInfo{
			Namespace: p.Namespace, Name: p.Name, ServiceAccount: p.Spec.ServiceAccountName,
			MTLS: p.Labels[LabelTLSMode] == TLSModeMTLS, Labels: p.Labels,
		}
	}
	c, problems = Build(cfg, o)
	m.mu.Lock()
	m.builds++
	m.last = &memberSnapshot{gen: gen, cluster: c.Clone(), problems: problems}
	m.mu.Unlock()
	return c, problems, lag
}

// Clients for the MCS controller.

// Kube is the member's Kubernetes client.
func (m *Member) Kube() kubernetes.Interface { return m.kube }

// Node is one of the member's nodes: from its cache, or, for a node the
// cache has not seen yet (a pod admitted onto a node that just joined),
// from its API server.
func (m *Member) Node(ctx context.Context, name string) (*corev1.Node, error) {
	if obj, ok, err := m.nodes.GetStore().GetByKey(name); err == nil && ok {
		return obj.(*corev1.Node), nil
	}
	return m.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

// MCS is the member's Multi-Cluster Services client.
func (m *Member) MCS() mcsclient.Interface { return m.mcs }

// ServiceExports lists the member's ServiceExports from its cache.
func (m *Member) ServiceExports() []*mcsv1beta1.ServiceExport {
	var out []*mcsv1beta1.ServiceExport
	for _, obj := range m.exports.GetStore().List() {
		out = append(out, obj.(*mcsv1beta1.ServiceExport))
	}
	return out
}

// ServiceImports lists the member's ServiceImports from its cache.
func (m *Member) ServiceImports() []*mcsv1beta1.ServiceImport {
	var out []*mcsv1beta1.ServiceImport
	for _, obj := range m.imports.GetStore().List() {
		out = append(out, obj.(*mcsv1beta1.ServiceImport))
	}
	return out
}

// EndpointSlices lists the member's EndpointSlices from its cache.
func (m *Member) EndpointSlices() []*discoveryv1.EndpointSlice {
	objs := m.slices.GetStore().List()
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, obj := range objs {
		out = append(out, obj.(*discoveryv1.EndpointSlice))
	}
	return out
}

// Service returns a Service from the member's cache.
func (m *Member) Service(namespace, name string) (*corev1.Service, bool) {
	obj, ok, _ := m.services.GetStore().GetByKey(namespace + "/" + name)
	if !ok {
		return nil, false
	}
	return obj.(*corev1.Service), true
}

// Namespaces lists the names of the member's namespaces (not terminating).
func (m *Member) Namespaces() []string {
	var out []string
	for _, obj := range m.namespaces.GetStore().List() {
		ns := obj.(*corev1.Namespace)
		if ns.Status.Phase != corev1.NamespaceTerminating {
			out = append(out, ns.Name)
		}
	}
	slices.Sort(out)
	return out
}
