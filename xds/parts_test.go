package xds

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
)

// encodingIDs are SPIFFE ID lists the hand encodings are checked on: none
// (any ID of the trust domain), one, several, and IDs long enough for
// multi-byte length prefixes at every level.
var encodingIDs = [][]string{
	nil,
	{"spiffe://cluster.local/ns/demo/sa/echo"},
	{"spiffe://cluster.local/ns/demo/sa/a", "spiffe://cluster.local/ns/demo/sa/b", "spiffe://cluster.local/ns/demo/sa/default"},
	{"spiffe://example.org/ns/" + strings.Repeat("n", 63) + "/sa/" + strings.Repeat("s", 253)},
	longIDList(40),
}

func longIDList(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("spiffe://cluster.local/ns/ns-%d/sa/%s", i, strings.Repeat("x", i*7))
	}
	return out
}

var encodingPolicies = []Policy{
	{},
	{SVIDProvider: SVIDFromSPIRE},
	{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), SVIDProvider: SVIDFromAgent},
}

// TestCommonTLSEncoding: the common_tls_context a sidecar cluster's
// upstream TLS carries, encoded by appendCommonTLS, is byte for byte what
// proto.Marshal (plain and deterministic) gives the message
// translator.commonTLS builds.
func TestCommonTLSEncoding(t *testing.T) {
	for _, p := range encodingPolicies {
		for _, ids := range encodingIDs {
			checkCommonTLS(t, p, ids)
		}
	}
}

func checkCommonTLS(t *testing.T, p Policy, ids []string) {
	t.Helper()
	tr := &translator{policy: p}
	msg := tr.commonTLS(tr.peerSANs(ids), nil)
	for _, opts := range []proto.MarshalOptions{{}, {Deterministic: true}} {
		want, err := opts.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := tr.upstreamCommonTLS(ids); !bytes.Equal(got, want) {
			t.Fatalf("policy %+v, %d IDs: encoded\n%x\nproto.Marshal\n%x", p, len(ids), got, want)
		}
	}
}

// TestUpstreamTLSEncoding: a sidecar cluster's UpstreamTlsContext, encoded
// by appendUpstreamTLS, is what proto.Marshal gives the message, and the
// transport socket decodes to it.
func TestUpstreamTLSEncoding(t *testing.T) {
	for _, p := range encodingPolicies {
		for _, ids := range encodingIDs {
			for _, sni := range []string{"", "outbound_.80_._.echo.demo.svc.cluster.local", strings.Repeat("h", 300)} {
				tr := &translator{policy: p}
				common := tr.upstreamCommonTLS(ids)
				want, err := proto.Marshal(&tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: tr.commonTLS(tr.peerSANs(ids), nil)})
				if err != nil {
					t.Fatal(err)
				}
				got := appendUpstreamTLS(nil, common, sni)
				if !bytes.Equal(got, want) {
					t.Fatalf("sni %q, %d IDs: encoded\n%x\nproto.Marshal\n%x", sni, len(ids), got, want)
				}
				if n := upstreamTLSSize(common, sni); n != len(got) {
					t.Errorf("upstreamTLSSize = %d, encoded %d bytes", n, len(got))
				}
			}
		}
	}
}

// FuzzCommonTLSEncoding holds appendCommonTLS to proto.Marshal for any
// list of IDs proto.Marshal accepts (valid UTF-8).
func FuzzCommonTLSEncoding(f *testing.F) {
	f.Add("spiffe://cluster.local/ns/demo/sa/echo", "", 1)
	f.Add("a", "b", 2)
	f.Add(strings.Repeat("z", 200), "\x00", 0)
	f.Fuzz(func(t *testing.T, a, b string, n int) {
		if !utf8.ValidString(a) || !utf8.ValidString(b) {
			t.Skip("proto.Marshal refuses invalid UTF-8 in a string field")
		}
		ids := []string{a, b, a + b}[:max(0, min(n, 3))]
		checkCommonTLS(t, Policy{}, ids)
	})
}

// TestSharedPartsUnchanged: rendering never writes to the sub-messages
// resources share (parts.go). Every golden view is rendered, its resources
// marshalled, and then every other view rendered; the first view's bytes
// must not have changed, nor the package's shared messages.
func TestSharedPartsUnchanged(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	shared := []proto.Message{edsClusterConfig, commonLBConfig, plainTCPSocket, mtlsMatch, prefixRoot, zeroDuration, mtlsMetadata, adsSource}
	before := marshalAll(t, shared)
	type rendered struct {
		name  string
		res   *Resources
		bytes [][]byte
	}
	var views []rendered
	for _, in := range inputs {
		cs, g, p := loadCase(t, in)
		res, err := Render(cs, g, p)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		views = append(views, rendered{filepath.Base(in), res, marshalView(t, res)})
	}
	for _, v := range views {
		if again := marshalView(t, v.res); !equalBytes(again, v.bytes) {
			t.Errorf("%s: its resources changed while other views were rendered", v.name)
		}
	}
	if after := marshalAll(t, shared); !equalBytes(after, before) {
		t.Error("a shared package-level message changed")
	}
}

// TestConcurrentRenders: views rendered and marshalled at the same time
// share package-level messages; under -race this shows that nothing writes
// to them.
func TestConcurrentRenders(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	var wg sync.WaitGroup
	for _, in := range inputs {
		cs, g, p := loadCase(t, in)
		want, err := Render(cs, g, p)
		if err != nil {
			t.Fatal(err)
		}
		wantBytes := marshalView(t, want)
		for range 2 {
			wg.Go(func() {
				res, err := Render(cs, g, p)
				if err != nil {
					t.Error(err)
					return
				}
				if !equalBytes(marshalView(t, res), wantBytes) {
					t.Errorf("%s: concurrent render differs", filepath.Base(in))
				}
			})
		}
	}
	wg.Wait()
}

func marshalView(t *testing.T, r *Resources) [][]byte {
	t.Helper()
	var out [][]byte
	for _, typeURL := range TypeURLs {
		for _, res := range r.ByType(typeURL) {
			out = append(out, marshalAll(t, []proto.Message{res})...)
		}
	}
	return out
}

func marshalAll(t *testing.T, ms []proto.Message) [][]byte {
	t.Helper()
	out := make([][]byte, 0, len(ms))
	for _, m := range ms {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Error(err)
		}
		out = append(out, b)
	}
	return out
}

func equalBytes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
