package mcs_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/dnstest"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
)

// TestHeadlessClusterSetDNS resolves a headless export through real CoreDNS
// (the kubernetes block and RBAC of examples/kubernetes/coredns.yaml), one
// per member, over the ServiceImports and MCS EndpointSlices Horizon's
// controller writes: no slice here is made by hand. east and central are on
// net-a, west on net-b; east and west export the StatefulSet-like demo/db
// (endpoints with hostnames, one of east's not ready), central only imports.
//
// Split horizon decides what DNS shows: a member's MCS slices list only the
// endpoints on its own network, so db.demo.svc.clusterset.local answers, in
// each member, the ready endpoints of the exporting clusters on its network
// (east's in east and central, west's in west), and
// <hostname>.<cluster>.db.demo.svc.clusterset.local exists only for those.
// Endpoints on other networks are not in DNS at all: a pod cannot reach them
// directly, and the mesh reaches them through their network's east-west
// gateway (EDS), not through addresses DNS hands out. SRV lists one target
// per ready endpoint of the member's network; after the unexport every name
// is NXDOMAIN.
//
// With the slices disabled (mcs.Config.Slices.Disabled, as the tree was
// before Horizon wrote them) the ServiceImport is still Headless but the
// name is NXDOMAIN in every member, and this test fails at its first A query.
func TestHeadlessClusterSetDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three API servers and three CoreDNS")
	}
	clusters := kubetest.Start(t, "east", "central", "west")
	east, central, west := clusters[0], clusters[1], clusters[2]
	ctx := context.Background()
	for _, c := range clusters {
		mustCreate(t, errOf(c.Kube.CoreV1().Namespaces().Create(ctx, namespace("demo"), metav1.CreateOptions{})))
	}
	runHorizon(t, clusters, map[string]string{"east": "net-a", "central": "net-a", "west": "net-b"}, horizonOptions{})

	servers := map[string]*dnstest.Server{}
	for _, c := range clusters {
		as, err := dnstest.AsCoreDNS(ctx, c.Config)
		if err != nil {
			t.Fatal(err)
		}
		servers[c.Name] = dnstest.Start(t, as, dnstest.Options{Log: testing.Verbose()})
	}

	for _, sc := range []struct {
		c   *kubetest.Cluster
		eps []discoveryv1.Endpoint
	}{
		{east, []discoveryv1.Endpoint{
			{Addresses: []string{"10.1.0.1"}, Hostname: ptr("db-0")},
			{Addresses: []string{"10.1.0.2"}, Hostname: ptr("db-1")},
			{Addresses: []string{"10.1.0.3"}, Hostname: ptr("db-2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
		}},
		{west, []discoveryv1.Endpoint{{Addresses: []string{"10.2.0.1"}, Hostname: ptr("db-0")}}},
	} {
		s := svc("db", corev1.ServicePort{Name: "pg", Port: 5432})
		s.Spec.ClusterIP = corev1.ClusterIPNone
		mustCreate(t, errOf(sc.c.Kube.CoreV1().Services("demo").Create(ctx, s, metav1.CreateOptions{})))
		mustCreate(t, errOf(sc.c.Kube.DiscoveryV1().EndpointSlices("demo").Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "db-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   sc.eps,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("pg"), Port: ptr(int32(5432)), Protocol: ptr(corev1.ProtocolTCP)}},
		}, metav1.CreateOptions{})))
		mustCreate(t, errOf(sc.c.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, svcExport("db"), metav1.CreateOptions{})))
	}

	const (
		name = "db.demo.svc.clusterset.local"
		srv  = "_pg._tcp." + name
		wait = 20 * time.Second
	)
	netA := []query{
		{name, dns.TypeA, dnstest.Want("NOERROR", "10.1.0.1", "10.1.0.2")},
		{"db-0.east." + name, dns.TypeA, dnstest.Want("NOERROR", "10.1.0.1")},
		{"db-1.east." + name, dns.TypeA, dnstest.Want("NOERROR", "10.1.0.2")},
		{"db-2.east." + name, dns.TypeA, dnstest.Want("NXDOMAIN")}, // not ready
		{"db-0.west." + name, dns.TypeA, dnstest.Want("NXDOMAIN")}, // other network
		{srv, dns.TypeSRV, dnstest.Want("NOERROR",
			"0 50 5432 db-0.east."+name+".",
			"0 50 5432 db-1.east."+name+".")},
		{name, dns.TypeAAAA, dnstest.Want("NOERROR")},
	}
	want := map[string][]query{
		"east": netA,
		"central": append(netA,
			// central has no Service db: cluster.local does not see imports.
			query{"db.demo.svc.cluster.local", dns.TypeA, dnstest.Want("NXDOMAIN")}),
		"west": {
			{name, dns.TypeA, dnstest.Want("NOERROR", "10.2.0.1")},
			{"db-0.west." + name, dns.TypeA, dnstest.Want("NOERROR", "10.2.0.1")},
			{"db-0.east." + name, dns.TypeA, dnstest.Want("NXDOMAIN")}, // other network
			{"db-1.east." + name, dns.TypeA, dnstest.Want("NXDOMAIN")},
			{srv, dns.TypeSRV, dnstest.Want("NOERROR", "0 100 5432 db-0.west."+name+".")},
		},
	}
	for _, c := range clusters {
		t.Run(c.Name, func(t *testing.T) {
			for _, q := range want[c.Name] {
				servers[c.Name].WaitFor(t, q.name, q.qtype, q.want, wait)
			}
		})
	}
	if t.Failed() {
		t.FailNow()
	}

	// A pod of east's becomes ready: it appears in the members of net-a.
	es, err := east.Kube.DiscoveryV1().EndpointSlices("demo").Get(ctx, "db-abcde", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es.Endpoints[2].Conditions.Ready = ptr(true)
	if _, err := east.Kube.DiscoveryV1().EndpointSlices("demo").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*kubetest.Cluster{east, central} {
		t.Run(c.Name+" db-2 ready", func(t *testing.T) {
			servers[c.Name].WaitFor(t, name, dns.TypeA, dnstest.Want("NOERROR", "10.1.0.1", "10.1.0.2", "10.1.0.3"), wait)
			servers[c.Name].WaitFor(t, "db-2.east."+name, dns.TypeA, dnstest.Want("NOERROR", "10.1.0.3"), wait)
		})
	}
	servers["west"].WaitFor(t, name, dns.TypeA, dnstest.Want("NOERROR", "10.2.0.1"), wait)

	for _, c := range []*kubetest.Cluster{east, west} {
		if err := c.MCS.MulticlusterV1beta1().ServiceExports("demo").Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clusters {
		t.Run(c.Name+" unexported", func(t *testing.T) {
			s := servers[c.Name]
			s.WaitFor(t, name, dns.TypeA, dnstest.Want("NXDOMAIN"), wait)
			s.WaitFor(t, "db-0.east."+name, dns.TypeA, dnstest.Want("NXDOMAIN"), wait)
			s.WaitFor(t, "db-0.west."+name, dns.TypeA, dnstest.Want("NXDOMAIN"), wait)
			s.WaitFor(t, srv, dns.TypeSRV, dnstest.Want("NXDOMAIN"), wait)
		})
	}
}

type query struct {
	name  string
	qtype uint16
	want  dnstest.Answer
}

// horizonOptions adjusts runHorizon.
type horizonOptions struct {
	// Rest, when set, gives the config Horizon uses for a member instead of
	// the cluster's admin config.
	Rest   func(c *kubetest.Cluster) *rest.Config
	Slices mcs.SliceConfig
	Logger *slog.Logger
}

// horizonRun is a running Kubernetes source and MCS controller.
type horizonRun struct {
	src *kube.Source
	reg *prometheus.Registry
}

// runHorizon runs the Kubernetes source and one MCS controller over the
// clusters, on the given networks, until the test ends (before the clusters
// stop).
func runHorizon(t *testing.T, clusters []*kubetest.Cluster, network map[string]string, o horizonOptions) *horizonRun {
	t.Helper()
	var latest atomic.Pointer[discovery.ClusterSet]
	var ctrl atomic.Pointer[mcs.Controller]
	src := kube.NewSource(kube.SourceOptions{Logger: o.Logger, OnUpdate: func(cs *discovery.ClusterSet) {
		latest.Store(cs)
		if c := ctrl.Load(); c != nil {
			c.Notify()
		}
	}})
	for _, c := range clusters {
		cfg := c.Config
		if o.Rest != nil {
			cfg = o.Rest(c)
		}
		if err := src.Set(kube.MemberConfig{Name: c.Name, Network: network[c.Name], Rest: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	c, err := mcs.New(mcs.Config{
		Members: func() []mcs.Member {
			var out []mcs.Member
			for _, m := range src.SyncedMembers() {
				out = append(out, m)
			}
			return out
		},
		ClusterSet: latest.Load,
		Resync:     time.Second,
		Logger:     o.Logger,
		Metrics:    mcs.NewMetrics(reg),
		Slices:     o.Slices,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Store(c)
	runCtx, stop := context.WithCancel(context.Background())
	srcDone, ctrlDone := make(chan error, 1), make(chan error, 1)
	go func() { srcDone <- src.Run(runCtx) }()
	go func() { ctrlDone <- c.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ctrlDone; err != nil {
			t.Errorf("controller: %v", err)
		}
		<-srcDone
	})
	return &horizonRun{src: src, reg: reg}
}
