package kube

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
)

// apiRequest is what the API server authorizes a resource request as.
type apiRequest struct {
	group, resource, verb string
}

// parseRequest reads a request the way the API server's authorizer sees it
// (group, resource with its subresource, verb); ok is false for
// non-resource paths (/readyz, /version), which every authenticated user may
// GET.
func parseRequest(r *http.Request) (req apiRequest, watch, ok bool) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:] // api/v1
	case len(parts) >= 4 && parts[0] == "apis":
		req.group, parts = parts[1], parts[3:] // apis/<group>/<version>
	default:
		return apiRequest{}, false, false
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:] // a namespaced request
	}
	req.resource = parts[0]
	named := len(parts) >= 2
	if len(parts) >= 3 {
		req.resource += "/" + parts[2]
	}
	q := r.URL.Query()
	watch = q.Get("watch") == "true" || q.Get("watch") == "1"
	switch {
	case r.Method != http.MethodGet:
		req.verb = map[string]string{http.MethodPost: "create", http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete"}[r.Method]
	case watch:
		req.verb = "watch"
	case named:
		req.verb = "get"
	default:
		req.verb = "list"
	}
	return req, watch, true
}

// allows reports whether one of the rules allows the request.
func allows(rules []rbacv1.PolicyRule, req apiRequest) bool {
	for _, r := range rules {
		if (slices.Contains(r.APIGroups, req.group) || slices.Contains(r.APIGroups, "*")) &&
			(slices.Contains(r.Resources, req.resource) || slices.Contains(r.Resources, "*")) &&
			(slices.Contains(r.Verbs, req.verb) || slices.Contains(r.Verbs, "*")) {
			return true
		}
	}
	return false
}

// TestReaderRulesCoverTheMember runs a Member against a stand-in API server
// that records every request, until the Member has synced, and checks that
// ReaderRules allow each one: the list and watch of every informer the
// Member starts, whatever they are, and the ClusterProperty it reads. The
// list of informers is the Member's own, not one kept here.
func TestReaderRulesCoverTheMember(t *testing.T) {
	var mu sync.Mutex
	seen := map[apiRequest]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, watch, ok := parseRequest(r)
		if ok {
			mu.Lock()
			seen[req] = true
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case !ok:
			io.WriteString(w, "ok")
		case watch && r.URL.Query().Get("sendInitialEvents") == "true":
			// No streaming lists here: the informer falls back to list.
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"BadRequest","code":400}`)
		case watch:
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case req.verb == "list":
			io.WriteString(w, `{"metadata":{"resourceVersion":"1"},"items":[]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
		}
	}))
	defer srv.Close()

	m, err := NewMember(MemberConfig{Name: "east", Network: "east", Rest: &rest.Config{Host: srv.URL}}, nil, func() {})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for m.State() != Synced {
		if time.Now().After(deadline) {
			t.Fatal("the member did not sync against the stand-in API server")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	listed := map[apiRequest]bool{}
	for req := range seen {
		if !allows(ReaderRules(), req) {
			t.Errorf("the member asks to %s %s (group %q), which ReaderRules do not allow", req.verb, req.resource, req.group)
		}
		if req.verb == "list" {
			listed[apiRequest{group: req.group, resource: req.resource}] = true
		}
	}
	if n := len(m.informers()); len(listed) != n {
		t.Errorf("%d resources listed, want one per informer (%d): %v", len(listed), n, listed)
	}
	if !seen[apiRequest{group: ClusterPropertyGVR.Group, resource: ClusterPropertyGVR.Resource, verb: "get"}] {
		t.Error("the member did not read its ClusterProperty")
	}
}

// TestReaderRulesMatchExamples: the ClusterRole in the deployment example is
// the one add-secret creates.
func TestReaderRulesMatchExamples(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "kubernetes", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	found := false
	for {
		var role rbacv1.ClusterRole
		if err := dec.Decode(&role); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if role.Kind == "ClusterRole" && role.Name == ReaderClusterRole {
			found = true
			if !apiequality.Semantic.DeepEqual(role.Rules, ReaderRules()) {
				t.Errorf("examples/kubernetes/rbac.yaml ClusterRole %s:\n%+v\nadd-secret:\n%+v", ReaderClusterRole, role.Rules, ReaderRules())
			}
		}
	}
	if !found {
		t.Errorf("no ClusterRole %s in examples/kubernetes/rbac.yaml", ReaderClusterRole)
	}
}
