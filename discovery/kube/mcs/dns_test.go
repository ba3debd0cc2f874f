package mcs_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/dnstest"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestClusterSetDNS resolves clusterset.local through real CoreDNS (the
// kubernetes block and RBAC of examples/kubernetes/coredns.yaml), one per
// member, over ServiceImports that Horizon's MCS controller writes into two
// real member clusters: east exports demo/echo, west only imports it.
//
// From each member: A = the ClusterSet IP of the ServiceImport (the same in
// both, never east's own ClusterIP), no AAAA (IPv4 only), SRV per named
// port; cluster.local answers only the member's own Service (east's
// ClusterIP in east, nothing in west); after the unexport, NXDOMAIN.
func TestClusterSetDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two API servers and two CoreDNS")
	}
	clusters := kubetest.Start(t, "east", "west")
	east := clusters[0]
	ctx := context.Background()
	for _, c := range clusters {
		mustCreate(t, errOf(c.Kube.CoreV1().Namespaces().Create(ctx, namespace("demo"), metav1.CreateOptions{})))
	}

	var latest atomic.Pointer[discovery.ClusterSet]
	var ctrl *mcs.Controller
	src := kube.NewSource(kube.SourceOptions{OnUpdate: func(cs *discovery.ClusterSet) {
		latest.Store(cs)
		if ctrl != nil {
			ctrl.Notify()
		}
	}})
	for _, c := range clusters {
		if err := src.Set(kube.MemberConfig{Name: c.Name, Network: "net-" + c.Name, Rest: c.Config}); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	ctrl, err = mcs.New(mcs.Config{
		Members: func() []mcs.Member {
			var out []mcs.Member
			for _, m := range src.SyncedMembers() {
				out = append(out, m)
			}
			return out
		},
		ClusterSet: latest.Load,
		Resync:     time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	srcDone, ctrlDone := make(chan error, 1), make(chan error, 1)
	go func() { srcDone <- src.Run(runCtx) }()
	go func() { ctrlDone <- ctrl.Run(runCtx) }()
	t.Cleanup(func() { // before the clusters stop
		stop()
		if err := <-ctrlDone; err != nil {
			t.Errorf("controller: %v", err)
		}
		<-srcDone
	})

	servers := map[string]*dnstest.Server{}
	for _, c := range clusters {
		as, err := dnstest.AsCoreDNS(ctx, c.Config)
		if err != nil {
			t.Fatal(err)
		}
		servers[c.Name] = dnstest.Start(t, as, dnstest.Options{Log: testing.Verbose()})
	}

	local, err := east.Kube.CoreV1().Services("demo").Create(ctx, svc("echo",
		corev1.ServicePort{Name: "http", Port: 80, AppProtocol: ptr("http")},
		corev1.ServicePort{Name: "grpc", Port: 9090, AppProtocol: ptr("grpc")},
	), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, errOf(east.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, svcExport("echo"), metav1.CreateOptions{})))

	var ip string
	testkit.Eventually(t, 20*time.Second, "demo/echo imported in both members", func() error {
		ip = ""
		for _, c := range clusters {
			im, err := c.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			if im.Spec.Type != mcsv1beta1.ClusterSetIP || len(im.Spec.IPs) != 1 {
				return fmt.Errorf("%s: %s with IPs %v", c.Name, im.Spec.Type, im.Spec.IPs)
			}
			if ip != "" && im.Spec.IPs[0] != ip {
				return fmt.Errorf("%s: IP %s, elsewhere %s", c.Name, im.Spec.IPs[0], ip)
			}
			ip = im.Spec.IPs[0]
		}
		return nil
	})
	if ip == local.Spec.ClusterIP {
		t.Fatalf("ClusterSet IP %s is east's own ClusterIP", ip)
	}
	t.Logf("ClusterSet IP %s, east's ClusterIP %s", ip, local.Spec.ClusterIP)

	const (
		name = "echo.demo.svc.clusterset.local"
		wait = 10 * time.Second
	)
	for _, c := range clusters {
		t.Run(c.Name, func(t *testing.T) {
			s := servers[c.Name]
			s.WaitFor(t, name, dns.TypeA, dnstest.Want("NOERROR", ip), wait)
			s.WaitFor(t, name, dns.TypeAAAA, dnstest.Want("NOERROR"), wait)
			s.WaitFor(t, "_http._tcp."+name, dns.TypeSRV, dnstest.Want("NOERROR", "0 100 80 "+name+"."), wait)
			s.WaitFor(t, "_grpc._tcp."+name, dns.TypeSRV, dnstest.Want("NOERROR", "0 100 9090 "+name+"."), wait)
			s.WaitFor(t, "_metrics._tcp."+name, dns.TypeSRV, dnstest.Want("NXDOMAIN"), wait)
			if c == east {
				s.WaitFor(t, "echo.demo.svc.cluster.local", dns.TypeA, dnstest.Want("NOERROR", local.Spec.ClusterIP), wait)
			} else {
				s.WaitFor(t, "echo.demo.svc.cluster.local", dns.TypeA, dnstest.Want("NXDOMAIN"), wait)
			}
		})
	}

	if err := east.MCS.MulticlusterV1beta1().ServiceExports("demo").Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range clusters {
		t.Run(c.Name+" unexported", func(t *testing.T) {
			s := servers[c.Name]
			s.WaitFor(t, name, dns.TypeA, dnstest.Want("NXDOMAIN"), 20*time.Second)
			s.WaitFor(t, "_http._tcp."+name, dns.TypeSRV, dnstest.Want("NXDOMAIN"), wait)
			if c == east {
				// The Service itself stays: cluster.local still has it.
				s.WaitFor(t, "echo.demo.svc.cluster.local", dns.TypeA, dnstest.Want("NOERROR", local.Spec.ClusterIP), wait)
			}
		})
	}
}
