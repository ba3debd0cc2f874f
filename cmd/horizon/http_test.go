package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/xds/server"
)

func TestHTTPEndpoints(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	srv := server.New(ctx, server.Options{Metrics: server.NewMetrics(reg)})
	h, _ := newHTTPHandler(srv, nil, nil, nil, reg)

	get := func(path, remote string) (int, string) {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(body)
	}
	if code, _ := get("/readyz", "127.0.0.1:1"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before any ClusterSet: %d", code)
	}
	cs, err := file.Parse(local.Name, local.ClusterSet)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, remote string
		code         int
		contains     string
	}{
		{"/healthz", "10.1.2.3:4", 200, "ok"},
		{"/readyz", "10.1.2.3:4", 200, "ok"},
		{"/metrics", "10.1.2.3:4", 200, "horizon_xds_clusterset_info"},
		{"/debug/syncz", "10.1.2.3:4", 403, "loopback"},
		{"/debug/clusterset", "[2001:db8::1]:4", 403, "loopback"},
		{"/debug/clusterset", "127.0.0.1:4", 200, cs.Version()},
		{"/debug/syncz", "[::1]:4", 200, "null"},
		{"/debug/config_dump", "127.0.0.1:4", 400, "proxy="},
		{"/debug/config_dump?proxy=nobody", "127.0.0.1:4", 404, "no connected proxy"},
		{"/debug/gateways", "10.1.2.3:4", 403, "loopback"},
		{"/debug/explain?service=echo.demo.svc.clusterset.local:7070&from=us-east/us-east-1a", "10.1.2.3:4", 403, "loopback"},
		{"/debug/explain?service=echo.demo.svc.clusterset.local:7070&from=us-east/us-east-1a", "127.0.0.1:4", 200, "pod in cluster east-1, same network: same zone"},
		{"/debug/explain?service=echo.demo.svc.clusterset.local:7070", "127.0.0.1:4", 400, "source locality"},
		{"/debug/gateways", "127.0.0.1:4", 200, `"Gateways"`},
		{"/debug/explain/route?host=echo.demo.svc.clusterset.local&from=east-1&header=x-user=tester", "10.1.2.3:4", 403, "loopback"},
		{"/debug/explain/route?host=echo.demo.svc.clusterset.local&from=east-1&header=x-user=tester", "127.0.0.1:4", 200, "headers {x-user=tester}, from a proxy in cluster east-1"},
		{"/debug/explain/route?host=echo.demo.svc.clusterset.local", "127.0.0.1:4", 400, "source cluster are required"},
	} {
		code, body := get(tt.path, tt.remote)
		if code != tt.code || !strings.Contains(body, tt.contains) {
			t.Errorf("GET %s from %s: %d %q, want %d containing %q", tt.path, tt.remote, code, body, tt.code, tt.contains)
		}
	}
}
