package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/gateway/health"
	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/server"
)

// newHTTPHandler serves the operational endpoints: /metrics, /healthz,
// /readyz, and /debug/ to loopback clients. The second result is the debug
// pages alone, to add pages to and to serve to admins over mutual TLS. They show topology, never secrets (Horizon serves no
// private keys), but topology is still not for everyone.
func newHTTPHandler(srv *server.Server, watcher *file.Watcher, source *kube.Source, prober *health.Prober, reg *prometheus.Registry) (*http.ServeMux, *http.ServeMux) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !srv.Ready() {
			http.Error(w, "no ClusterSet yet", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	debug := http.NewServeMux()
	debug.HandleFunc("GET /debug/syncz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, srv.Syncz()) })
	debug.HandleFunc("GET /debug/views", func(w http.ResponseWriter, _ *http.Request) {
		type viewSummary struct {
			View      string            `json:"view"`
			Versions  map[string]string `json:"versions"`
			Clusters  int               `json:"clusters"`
			Endpoints int               `json:"assignments"`
			Listeners int               `json:"listeners"`
			Routes    int               `json:"routes"`
			Watches   int               `json:"watches"`
			Notes     []string          `json:"notes"`
		}
		var out []viewSummary
		for _, v := range srv.Cache().Views() {
			out = append(out, viewSummary{
				View: v.Group.String(), Versions: v.Versions, Clusters: len(v.Resources.Clusters), Endpoints: len(v.Resources.Endpoints),
				Listeners: len(v.Resources.Listeners), Routes: len(v.Resources.Routes), Watches: v.Watches, Notes: v.Resources.Notes,
			})
		}
		writeJSON(w, out)
	})
	debug.HandleFunc("GET /debug/config_dump", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("proxy")
		if id == "" {
			http.Error(w, "want ?proxy=<node id>", http.StatusBadRequest)
			return
		}
		v, err := srv.ProxyView(id)
		if errors.Is(err, server.ErrUnknownProxy) {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		dump, err := configDump(id, v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, dump)
	})
	debug.HandleFunc("GET /debug/clusterset", func(w http.ResponseWriter, _ *http.Request) {
		cs := srv.Current()
		out := map[string]any{}
		if cs != nil {
			out["version"] = cs.Version()
			out["networks"] = cs.Networks()
			out["clusters"] = cs.Clusters
			out["exports"] = cs.Exports
		}
		if watcher != nil {
			if err := watcher.LastError(); err != nil {
				out["last_error"] = err.Error()
			}
		}
		writeJSON(w, out)
	})
	debug.HandleFunc("GET /debug/members", func(w http.ResponseWriter, _ *http.Request) {
		if source == nil {
			writeJSON(w, []kube.MemberStatus{})
			return
		}
		writeJSON(w, source.Members())
	})
	debug.HandleFunc("GET /debug/explain", func(w http.ResponseWriter, r *http.Request) {
		cs := srv.Current()
		if cs == nil {
			http.Error(w, "no ClusterSet yet", http.StatusServiceUnavailable)
			return
		}
		q := r.URL.Query()
		var labels labelFlags
		for _, kv := range q["label"] {
			if err := labels.Set(kv); err != nil {
				http.Error(w, "label "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		var b bytes.Buffer
		err := explainFailover(&b, cs, srv.Policy(), explainQuery{
			service: q.Get("service"), from: q.Get("from"), cluster: q.Get("cluster"), role: q.Get("role"), labels: labels,
		})
		if err != nil {
			http.Error(w, err.Error()+"\n(ask /debug/explain?service=HOST[:PORT]&from=REGION[/ZONE][&cluster=C][&role=proxyless][&label=k=v...])", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(b.Bytes())
	})
	debug.HandleFunc("GET /debug/explain/route", func(w http.ResponseWriter, r *http.Request) {
		explainRouteHandler(w, r, srv.Current(), srv.Policy()) // explainroute.go
	})
	debug.HandleFunc("GET /debug/gateways", func(w http.ResponseWriter, _ *http.Request) {
		if prober == nil {
			writeJSON(w, health.Status{})
			return
		}
		writeJSON(w, prober.Status())
	})
	mux.Handle("/debug/", loopbackOnly(debug))
	return mux, debug
}

func configDump(id string, v server.ViewInfo) (map[string]any, error) {
	out := map[string]any{"proxy": id, "view": v.Group.String(), "versions": v.Versions, "notes": v.Resources.Notes}
	for _, typeURL := range xds.TypeURLs {
		var list []json.RawMessage
		for _, r := range v.Resources.ByType(typeURL) {
			b, err := protojson.Marshal(r)
			if err != nil {
				return nil, err
			}
			list = append(list, b)
		}
		out[typeURL] = list
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
