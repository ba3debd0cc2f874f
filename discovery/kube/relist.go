package kube

import (
	"context"
	"net/http"
	"path"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// relistCounter counts the lists of a member's informers that come after
// its initial sync in horizon_kube_relists_total. client-go relists when a
// watch cannot resume: its resource version was compacted away in etcd (410
// Gone, "too old resource version"), or the list or watch failed. A
// reflector logs a 410 only at klog V(4), so without this Horizon could not
// tell that a member's informers started over. It sits in the member's HTTP
// transport and sees every request: a list is a GET of a collection an
// informer reads that is not a watch, or is the watch-list form of a list
// (sendInitialEvents=true).
type relistCounter struct {
	next        http.RoundTripper
	collections map[string]bool // URL paths of the informers' collections
	// relisted is called for each list after the initial sync.
	relisted func()
}

// notRelist marks a request's context as Horizon's own list (recheckRefused),
// not an informer's.
type notRelist struct{}

func (c *relistCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	q := req.URL.Query()
	if req.Method == http.MethodGet && c.collections[req.URL.Path] && req.Context().Value(notRelist{}) == nil &&
		(q.Get("watch") != "true" && q.Get("watch") != "1" || q.Get("sendInitialEvents") == "true") {
		c.relisted()
	}
	return c.next.RoundTrip(req)
}

// WrappedRoundTripper lets client-go reach the transport underneath (to
// close its idle connections when the member stops).
func (c *relistCounter) WrappedRoundTripper() http.RoundTripper { return c.next }

// collectionPath is the URL path of a resource's collection in every
// namespace.
func collectionPath(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return path.Join("/api", gvr.Version, gvr.Resource)
	}
	return path.Join("/apis", gvr.Group, gvr.Version, gvr.Resource)
}

func withoutRelistCount(ctx context.Context) context.Context {
	return context.WithValue(ctx, notRelist{}, true)
}
