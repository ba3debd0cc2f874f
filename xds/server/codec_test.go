package server

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/horizonmesh/horizon/xds"
)

// TestCodecRoundTrip: what the codec writes decodes to the message it was
// given, whether it writes it itself or falls back to the proto codec, and
// it shares the resources' bytes instead of copying them.
func TestCodecRoundTrip(t *testing.T) {
	big := make([]byte, 3000)
	for i := range big {
		big[i] = byte(i)
	}
	anys := []*anypb.Any{
		{TypeUrl: xds.TypeURLs[1], Value: big},
		{TypeUrl: xds.TypeURLs[1], Value: []byte{1, 2, 3}},
		{TypeUrl: xds.TypeURLs[1]}, // an empty resource
		{TypeUrl: xds.TypeURLs[1], Value: make([]byte, 200)},
	}
	res := func() []*discoverypb.Resource {
		var out []*discoverypb.Resource
		for i, a := range anys {
			out = append(out, &discoverypb.Resource{Name: "r" + string(rune('a'+i)), Version: "v" + string(rune('0'+i)), Resource: a})
		}
		return out
	}
	withTTL := res()
	withTTL[1].Ttl = durationpb.New(5)
	cases := []struct {
		name   string
		msg    proto.Message
		shares bool // the codec writes it itself
	}{
		{"sotw", &discoverypb.DiscoveryResponse{VersionInfo: "v1", Resources: anys, TypeUrl: xds.TypeURLs[1], Nonce: "7", ControlPlane: &core.ControlPlane{Identifier: "horizon"}}, true},
		{"sotw without resources", &discoverypb.DiscoveryResponse{VersionInfo: "v1", TypeUrl: xds.TypeURLs[1], Nonce: "8"}, false},
		{"delta", &discoverypb.DeltaDiscoveryResponse{SystemVersionInfo: "s", Resources: res(), RemovedResources: []string{"x", "y"}, TypeUrl: xds.TypeURLs[1], Nonce: "9"}, true},
		{"delta removals only", &discoverypb.DeltaDiscoveryResponse{RemovedResources: []string{"x"}, TypeUrl: xds.TypeURLs[1], Nonce: "10"}, false},
		{"delta with a ttl", &discoverypb.DeltaDiscoveryResponse{Resources: withTTL, TypeUrl: xds.TypeURLs[1], Nonce: "11"}, false},
		{"another message", &discoverypb.DiscoveryRequest{VersionInfo: "v", TypeUrl: xds.TypeURLs[0]}, false},
	}
	c := Codec()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := c.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			b := bs.Materialize()
			got := tc.msg.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(b, got); err != nil {
				t.Fatalf("the codec's bytes do not decode: %v", err)
			}
			if !proto.Equal(got, tc.msg) {
				t.Fatalf("decoded %v, want %v", got, tc.msg)
			}
			if want := proto.Size(tc.msg); len(b) != want {
				t.Errorf("%d bytes, proto.Size says %d", len(b), want)
			}
			shared := false
			for _, buf := range bs {
				d := buf.ReadOnlyData()
				shared = shared || (len(d) == len(big) && &d[0] == &big[0])
			}
			if shared != tc.shares {
				t.Errorf("resource bytes shared = %v, want %v", shared, tc.shares)
			}
			var back proto.Message = tc.msg.ProtoReflect().New().Interface()
			if err := c.Unmarshal(bs, back); err != nil || !proto.Equal(back, tc.msg) {
				t.Errorf("Unmarshal: %v", err)
			}
		})
	}
}

// TestCodecKnowsEveryField guards the hand-written encoding: a Resource
// field the codec does not check for would be dropped silently, so a
// go-control-plane upgrade that adds one must fail here first.
func TestCodecKnowsEveryField(t *testing.T) {
	known := map[string][]string{
		"envoy.service.discovery.v3.Resource": {"name", "resource_name", "aliases", "version", "resource", "ttl", "cache_control", "metadata"},
		"google.protobuf.Any":                 {"type_url", "value"},
	}
	for _, m := range []proto.Message{&discoverypb.Resource{}, &anypb.Any{}} {
		d := m.ProtoReflect().Descriptor()
		var got []string
		fields := d.Fields()
		for i := range fields.Len() {
			got = append(got, string(fields.Get(i).Name()))
		}
		want := known[string(d.FullName())]
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s has fields %v; the codec knows %v: update plainResource and encodeDelta", d.FullName(), got, want)
		}
	}
	// The envelopes' other fields are copied generically; the resources field numbers are fixed.
	for _, c := range []struct {
		m   proto.Message
		num protoreflect.FieldNumber
	}{{&discoverypb.DiscoveryResponse{}, fieldSotwResources}, {&discoverypb.DeltaDiscoveryResponse{}, fieldDeltaResources}} {
		if fd := c.m.ProtoReflect().Descriptor().Fields().ByNumber(c.num); fd == nil || fd.Name() != "resources" {
			t.Errorf("%T: field %d is not resources", c.m, c.num)
		}
	}
}

// TestDecodeSotwRequest: the codec decodes a state-of-the-world request as
// proto.Unmarshal does (every field, unknown ones kept, invalid UTF-8 in a
// name refused), its names sharing one string.
func TestDecodeSotwRequest(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for i := range 2000 {
		req := &discoverypb.DiscoveryRequest{TypeUrl: xds.TypeURLs[rng.IntN(4)], VersionInfo: fmt.Sprint(rng.IntN(3)), ResponseNonce: fmt.Sprint(rng.IntN(3))}
		for range rng.IntN(6) {
			req.ResourceNames = append(req.ResourceNames, fmt.Sprintf("outbound|%d||name-%d", rng.IntN(9000), rng.IntN(100)))
		}
		if rng.IntN(2) == 0 {
			req.ResourceNames = append(req.ResourceNames, "")
		}
		if rng.IntN(3) == 0 {
			req.Node = &core.Node{Id: fmt.Sprint("n", i), Cluster: "c"}
		}
		if rng.IntN(4) == 0 {
			req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: "bad"}
		}
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if rng.IntN(4) == 0 {
			b = protowire.AppendTag(b, 99, protowire.VarintType) // a field this version does not know
			b = protowire.AppendVarint(b, 7)
		}
		var want, got discoverypb.DiscoveryRequest
		if err := proto.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if err := Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !proto.Equal(&got, &want) {
			t.Fatalf("case %d: decoded %v, want %v", i, &got, &want)
		}
	}
	bad := protowire.AppendTag(nil, fieldRequestNames, protowire.BytesType)
	bad = protowire.AppendBytes(bad, []byte{0xff, 0xfe})
	var want, got discoverypb.DiscoveryRequest
	if proto.Unmarshal(bad, &want) == nil || Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, &got) == nil {
		t.Fatal("a name of invalid UTF-8 decoded")
	}
	if err := Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x1a, 0x05, 'a'})}, &got); err == nil {
		t.Fatal("a truncated name decoded")
	}
}

// TestCodecDeltaEntries: an incremental response the server sends is its
// view's entries themselves (deltaResponse), with no Resource message made
// or kept for each; the codec writes exactly the bytes of the equivalent
// DeltaDiscoveryResponse, and hands gRPC the entries' marshalled bytes
// without copying them.
func TestCodecDeltaEntries(t *testing.T) {
	big := make([]byte, 3000)
	for i := range big {
		big[i] = byte(i)
	}
	var entries []*entry
	for i, v := range [][]byte{big, {1, 2, 3}, nil, make([]byte, 200)} {
		e := &entry{name: "r" + string(rune('a'+i)), version: "v" + string(rune('0'+i)), any: &anypb.Any{TypeUrl: xds.TypeURLs[1], Value: v}}
		entries = append(entries, e)
	}
	for _, tc := range []struct {
		name string
		resp *deltaResponse
	}{
		{"resources", &deltaResponse{head: &discoverypb.DeltaDiscoveryResponse{SystemVersionInfo: "s", RemovedResources: []string{"x"}, TypeUrl: xds.TypeURLs[1], Nonce: "1"}, entries: entries}},
		{"removals only", &deltaResponse{head: &discoverypb.DeltaDiscoveryResponse{RemovedResources: []string{"x"}, TypeUrl: xds.TypeURLs[1], Nonce: "2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := Codec().Marshal(tc.resp)
			if err != nil {
				t.Fatal(err)
			}
			b := bs.Materialize()
			want := tc.resp.message()
			var got discoverypb.DeltaDiscoveryResponse
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Fatalf("the codec's bytes do not decode: %v", err)
			}
			if !proto.Equal(&got, want) {
				t.Fatalf("decoded %v, want %v", &got, want)
			}
			if n := proto.Size(want); len(b) != n {
				t.Errorf("%d bytes, proto.Size says %d", len(b), n)
			}
			shared := false
			for _, buf := range bs {
				d := buf.ReadOnlyData()
				shared = shared || (len(d) == len(big) && &d[0] == &big[0])
			}
			if shared != (len(tc.resp.entries) > 0) {
				t.Errorf("resource bytes shared = %v", shared)
			}
			// A gRPC server made without GRPCOptions encodes it with the
			// proto codec: the same message.
			pbs, err := encoding.GetCodecV2(grpcproto.Name).Marshal(tc.resp)
			if err != nil {
				t.Fatalf("the proto codec: %v", err)
			}
			var viaProto discoverypb.DeltaDiscoveryResponse
			if err := proto.Unmarshal(pbs.Materialize(), &viaProto); err != nil || !proto.Equal(&viaProto, want) {
				t.Fatalf("the proto codec's bytes decode to %v (%v), want %v", &viaProto, err, want)
			}
		})
	}
}

// TestEntryDeltaSize: an entry's deltaSize, which the byte budget of an
// incremental response counts, is the size of the Resource the codec
// writes for it.
func TestEntryDeltaSize(t *testing.T) {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: "outbound|8080||echo.demo.svc.cluster.local"}
	e, err := newEntry(xds.TypeURLs[1], cla)
	if err != nil {
		t.Fatal(err)
	}
	if n := proto.Size(&discoverypb.Resource{Name: e.name, Version: e.version, Resource: e.any}); e.deltaSize != n {
		t.Fatalf("deltaSize %d, want %d", e.deltaSize, n)
	}
}
