package main

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/horizonmesh/horizon/internal/testkit/certtest"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

// TestE2ESpireServe: `horizon serve --spire-socket` takes its SVID and the
// bundle from the Workload API, serves authenticated xDS to a proxy whose
// SVID comes from the same trust root, refuses one from a foreign root, and
// sends sidecars resources that fetch their secrets from SPIRE's SDS (the
// sds-grpc cluster).
func TestE2ESpireServe(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root := certtest.Root(t, td)
	fake, socket := startFakeWorkloadAPI(t)
	horizonID := "spiffe://cluster.local/ns/horizon-system/sa/horizon"
	fake.set(spireResponse(t, certtest.SVID(t, root, horizonID), root.Certificate()))

	mtls := freeLoopbackAddr(t)
	// SPIRE's chain names no cluster: an --identity-cluster rule binds
	// its workloads' IDs to east-1.
	h := startHorizon(t, buildHorizon(t), "--spire-socket", socket, "--mtls-address", mtls,
		"--identity-cluster", "spiffe://cluster.local/ns/demo/sa/*=east-1")

	request := func(client *x509svid.SVID) (*discoverypb.DiscoveryResponse, error) {
		conn, err := grpc.NewClient(mtls, grpc.WithTransportCredentials(credentials.NewTLS(
			tlsconfig.MTLSClientConfig(client, root.Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromString(horizonID))))))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return xdstest.Fetch(t, conn, &discoverypb.DiscoveryRequest{
			Node: xdstest.Node("echo-1", "CLUSTER_ID", "east-1", "NAMESPACE", "demo", "SERVICE_ACCOUNT", "echo"), TypeUrl: resourcev3.ClusterType,
		})
	}

	resp, err := request(certtest.SVID(t, root, "spiffe://cluster.local/ns/demo/sa/echo"))
	if err != nil {
		t.Fatalf("a proxy with an SVID from SPIRE's root: %v", err)
	}
	// Sidecar clusters name their secrets through SPIRE's SDS.
	viaSDS := 0
	for _, a := range resp.GetResources() {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		for _, m := range c.GetTransportSocketMatches() {
			var up tlsv3.UpstreamTlsContext
			if m.GetTransportSocket().GetTypedConfig().UnmarshalTo(&up) != nil {
				continue
			}
			for _, s := range up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
				if s.GetName() != xds.SecretDefault || s.GetSdsConfig().GetApiConfigSource().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != xds.SDSCluster {
					t.Fatalf("cluster %s: secret %v does not come from SPIRE's SDS", c.GetName(), s)
				}
				viaSDS++
			}
		}
	}
	if viaSDS == 0 {
		t.Fatal("no cluster uses mutual TLS")
	}

	foreign := certtest.Root(t, td)
	if _, err := request(certtest.SVID(t, foreign, "spiffe://cluster.local/ns/demo/sa/echo")); err == nil {
		t.Fatal("a proxy with an SVID from a foreign root was served")
	}
	if m := scrape(t, h); !strings.Contains(m, "horizon_spire_svid_expiry_timestamp_seconds") || !strings.Contains(m, "horizon_spire_bundle_expiry_timestamp_seconds") {
		t.Error("/metrics lacks the SPIRE expiry gauges")
	}
}
