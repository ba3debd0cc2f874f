package dnstest_test

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/discovery/kube/dnstest"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
)

// TestHarnessAnswersFromHandMadeMCSSlices checks the DNS harness, not Horizon:
// the ServiceImport and the MCS EndpointSlices here are made by the test,
// labelled as KEP-1645 says an MCS controller labels them. It proves that the
// CoreDNS this package runs (the kubernetes block of
// examples/kubernetes/coredns.yaml, as CoreDNS's ServiceAccount with the
// example's RBAC) answers a headless clusterset.local service with its ready
// endpoints, <hostname>.<cluster>.<svc>.<ns>.svc.clusterset.local per source
// cluster, and SRV records, so that tests of Horizon's own MCS EndpointSlices
// only have to create the export.
func TestHarnessAnswersFromHandMadeMCSSlices(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server and CoreDNS")
	}
	c := kubetest.Start(t, "east")[0]
	ctx := t.Context()
	as, err := dnstest.AsCoreDNS(ctx, c.Config)
	if err != nil {
		t.Fatal(err)
	}
	srv := dnstest.Start(t, as, dnstest.Options{Log: testing.Verbose()})

	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tcp := corev1.ProtocolTCP
	imp := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "demo"},
		Spec: mcsv1beta1.ServiceImportSpec{
			Type:  mcsv1beta1.Headless,
			Ports: []mcsv1beta1.ServicePort{{Name: "pg", Protocol: tcp, Port: 5432}},
		},
	}
	if _, err := c.MCS.MulticlusterV1beta1().ServiceImports("demo").Create(ctx, imp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*discoveryv1.EndpointSlice{
		mcsSlice("east", endpoint("10.1.0.1", "db-0", true), endpoint("10.1.0.2", "db-1", true), endpoint("10.1.0.3", "db-2", false)),
		mcsSlice("west", endpoint("10.2.0.1", "db-0", true)),
	} {
		if _, err := c.Kube.DiscoveryV1().EndpointSlices("demo").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name  string
		qtype uint16
		want  dnstest.Answer
	}{
		{"db.demo.svc.clusterset.local", dns.TypeA, dnstest.Want("NOERROR", "10.1.0.1", "10.1.0.2", "10.2.0.1")},
		{"db-0.east.db.demo.svc.clusterset.local", dns.TypeA, dnstest.Want("NOERROR", "10.1.0.1")},
		{"db-1.east.db.demo.svc.clusterset.local", dns.TypeA, dnstest.Want("NOERROR", "10.1.0.2")},
		{"db-0.west.db.demo.svc.clusterset.local", dns.TypeA, dnstest.Want("NOERROR", "10.2.0.1")},
		{"db-2.east.db.demo.svc.clusterset.local", dns.TypeA, dnstest.Want("NXDOMAIN")}, // not ready
		{"db-1.west.db.demo.svc.clusterset.local", dns.TypeA, dnstest.Want("NXDOMAIN")},
		{"_pg._tcp.db.demo.svc.clusterset.local", dns.TypeSRV, dnstest.Want("NOERROR",
			"0 33 5432 db-0.east.db.demo.svc.clusterset.local.",
			"0 33 5432 db-0.west.db.demo.svc.clusterset.local.",
			"0 33 5432 db-1.east.db.demo.svc.clusterset.local.")},
		// No Service db in this cluster: cluster.local does not see imports.
		{"db.demo.svc.cluster.local", dns.TypeA, dnstest.Want("NXDOMAIN")},
	} {
		srv.WaitFor(t, tc.name, tc.qtype, tc.want, 10*time.Second)
	}
}

func mcsSlice(cluster string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	name, proto, port := "pg", corev1.ProtocolTCP, int32(5432)
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "db-" + cluster,
			Namespace: "demo",
			Labels: map[string]string{
				mcsv1beta1.LabelServiceName:   "db",
				mcsv1beta1.LabelSourceCluster: cluster,
				discoveryv1.LabelManagedBy:    "dnstest.horizon.test",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &port}},
	}
}

func endpoint(addr, hostname string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Hostname:   &hostname,
		Conditions: discoveryv1.EndpointConditions{Ready: &ready},
	}
}
