package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

func TestEnvoyBootstrap(t *testing.T) {
	for _, role := range []string{"sidecar", "gateway"} {
		t.Run(role, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(t.Context(), []string{"bootstrap", "--role", role, "--id", "n1", "--cluster", "east-1", "--network", "east",
				"--namespace", "demo", "--service-account", "echo", "--region", "us-east", "--zone", "us-east-1a",
				"--xds-address", "horizon.horizon-system.svc:15010"}, &out, &errb)
			if err != nil {
				t.Fatalf("%v: %s", err, errb.String())
			}
			var b bootstrapv3.Bootstrap
			if err := protojson.Unmarshal(out.Bytes(), &b); err != nil {
				t.Fatalf("output is not an Envoy bootstrap: %v", err)
			}
			if err := b.ValidateAll(); err != nil {
				t.Fatal(err)
			}
			md := b.GetNode().GetMetadata().GetFields()
			for k, want := range map[string]string{"CLUSTER_ID": "east-1", "NETWORK": "east", "NAMESPACE": "demo", "SERVICE_ACCOUNT": "echo", "ROLE": role} {
				if got := md[k].GetStringValue(); got != want {
					t.Errorf("metadata %s = %q, want %q", k, got, want)
				}
			}
			if b.GetNode().GetLocality().GetZone() != "us-east-1a" || b.GetNode().GetId() != "n1" {
				t.Errorf("node %v", b.GetNode())
			}
			if !b.GetDynamicResources().GetAdsConfig().GetSetNodeOnFirstMessageOnly() {
				t.Error("ADS config does not send the node once")
			}
			// A DNS name for the xDS server needs a DNS cluster.
			for _, c := range b.GetStaticResources().GetClusters() {
				if c.GetName() == xdsCluster && c.GetType().String() != "STRICT_DNS" {
					t.Errorf("xds cluster type %v for a host name", c.GetType())
				}
			}
		})
	}
}

func TestGRPCBootstrap(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"bootstrap", "--role", "proxyless", "--id", "p1", "--cluster", "east-1", "--zone", "z", "--region", "r"}, &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	var doc struct {
		XDSServers []struct {
			ServerURI      string   `json:"server_uri"`
			ServerFeatures []string `json:"server_features"`
		} `json:"xds_servers"`
		Node struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
			Locality map[string]string `json:"locality"`
		} `json:"node"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.XDSServers) != 1 || doc.XDSServers[0].ServerURI != "127.0.0.1:15010" {
		t.Errorf("xds_servers %+v", doc.XDSServers)
	}
	if doc.Node.ID != "p1" || doc.Node.Metadata["CLUSTER_ID"] != "east-1" || doc.Node.Metadata["ROLE"] != "proxyless" || doc.Node.Locality["zone"] != "z" {
		t.Errorf("node %+v", doc.Node)
	}
}

func TestBootstrapRejects(t *testing.T) {
	for _, args := range [][]string{
		{"bootstrap"},
		{"bootstrap", "--cluster", "c", "--role", "router"},
		{"bootstrap", "--cluster", "c", "--xds-address", "nohost"},
	} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), args, &out, &errb); err == nil || out.Len() != 0 {
			t.Errorf("%s: err %v, output %q", strings.Join(args, " "), err, out.String())
		}
	}
}
