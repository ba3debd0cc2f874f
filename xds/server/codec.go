package server

import (
	"fmt"
	"strings"
	"unicode/utf8"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Codec returns the gRPC codec Horizon's xDS servers use (grpc.ForceServerCodecV2).
// It is the proto codec, except that a discovery response is written
// without copying its resources: every proxy of a view receives the same
// resources, marshalled once into their Any (newEntry), and the standard
// codec would copy those bytes into a new buffer for every response. This
// codec writes the envelope and each resource's few header bytes, and hands
// gRPC the shared bytes themselves (gRPC copies them once, into its frames).
// Anything it does not recognise is encoded by the proto codec. The bytes
// differ from proto.Marshal's only in field order, which protobuf allows
// (resources are written after the envelope's other fields).
func Codec() encoding.CodecV2 {
	return codec{base: encoding.GetCodecV2(grpcproto.Name)}
}

type codec struct{ base encoding.CodecV2 }

func (c codec) Name() string { return grpcproto.Name }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*discoverypb.DiscoveryRequest); ok {
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		return decodeSotwRequest(buf.ReadOnlyData(), m)
	}
	return c.base.Unmarshal(data, v)
}

// fieldRequestNames is DiscoveryRequest.resource_names.
const fieldRequestNames = 3

// decodeSotwRequest is proto.Unmarshal for a state-of-the-world request,
// but that its resource names share one string: a sidecar repeats every
// name it subscribes to (one per service in its view) in every ACK, and
// the proto decoder allocates each of them. The other fields are decoded
// by proto.Unmarshal.
func decodeSotwRequest(b []byte, m *discoverypb.DiscoveryRequest) error {
	// First the fields' bounds: the other fields' bytes, and how many
	// names there are and how long they are together.
	var rest []byte
	count, size := 0, 0
	for in := b; len(in) > 0; {
		num, typ, n := protowire.ConsumeTag(in)
		if n < 0 {
			return protowire.ParseError(n)
		}
		vn := protowire.ConsumeFieldValue(num, typ, in[n:])
		if vn < 0 {
			return protowire.ParseError(vn)
		}
		if num == fieldRequestNames && typ == protowire.BytesType {
			count++
			size += vn
		} else {
			rest = append(rest, in[:n+vn]...)
		}
		in = in[n+vn:]
	}
	if err := proto.Unmarshal(rest, m); err != nil {
		return err
	}
	if count == 0 {
		return nil
	}
	// Then the names, into one string.
	var all strings.Builder
	all.Grow(size)
	lens := make([]int, 0, count)
	for in := b; len(in) > 0; {
		num, typ, n := protowire.ConsumeTag(in)
		vn := protowire.ConsumeFieldValue(num, typ, in[n:])
		if num == fieldRequestNames && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(in[n:])
			if !utf8.Valid(v) {
				return fmt.Errorf("resource_names: invalid UTF-8")
			}
			all.Write(v)
			lens = append(lens, len(v))
		}
		in = in[n+vn:]
	}
	names := all.String()
	m.ResourceNames = make([]string, count)
	off := 0
	for i, l := range lens {
		m.ResourceNames[i] = names[off : off+l]
		off += l
	}
	return nil
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *discoverypb.DiscoveryResponse:
		if out, ok := encodeSotw(m); ok {
			return out, nil
		}
	case *discoverypb.DeltaDiscoveryResponse:
		if out, ok := encodeDelta(m); ok {
			return out, nil
		}
	case *deltaResponse:
		return encodeDeltaEntries(m)
	}
	return c.base.Marshal(v)
}

// Field numbers of the messages the codec writes by hand.
const (
	fieldSotwResources   = 2 // DiscoveryResponse.resources
	fieldDeltaResources  = 2 // DeltaDiscoveryResponse.resources
	fieldResourceVersion = 1 // Resource.version
	fieldResourceAny     = 2 // Resource.resource
	fieldResourceName    = 3 // Resource.name
	fieldAnyTypeURL      = 1 // Any.type_url
	fieldAnyValue        = 2 // Any.value
)

// envelope marshals m without one repeated field: the fields it has besides
// the resources, whatever they are.
func envelope(m proto.Message, without protowire.Number) ([]byte, error) {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Number() != without {
			dst.Set(fd, v)
		}
		return true
	})
	return proto.MarshalOptions{Deterministic: true}.Marshal(dst.Interface())
}

// plainAny reports whether a holds only a type URL and a value (as every
// Any Horizon makes): then its encoding is those two fields.
func plainAny(a *anypb.Any) bool {
	return a != nil && len(a.ProtoReflect().GetUnknown()) == 0
}

// anyHeader appends the encoding of a, up to (not including) its value's
// bytes, as field num of the enclosing message.
func anyHeader(b []byte, num protowire.Number, a *anypb.Any) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anySize(a)))
	return anyFields(b, a)
}

func anyFields(b []byte, a *anypb.Any) []byte {
	if a.TypeUrl != "" {
		b = protowire.AppendTag(b, fieldAnyTypeURL, protowire.BytesType)
		b = protowire.AppendString(b, a.TypeUrl)
	}
	if len(a.Value) > 0 {
		b = protowire.AppendTag(b, fieldAnyValue, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(a.Value)))
	}
	return b
}

func anySize(a *anypb.Any) int {
	n := 0
	if a.TypeUrl != "" {
		n += 1 + protowire.SizeBytes(len(a.TypeUrl))
	}
	if len(a.Value) > 0 {
		n += 1 + protowire.SizeBytes(len(a.Value))
	}
	return n
}

func encodeSotw(m *discoverypb.DiscoveryResponse) (mem.BufferSlice, bool) {
	if len(m.Resources) == 0 {
		return nil, false
	}
	for _, a := range m.Resources {
		if !plainAny(a) {
			return nil, false
		}
	}
	head, err := envelope(m, fieldSotwResources)
	if err != nil {
		return nil, false
	}
	// The headers of all resources share one buffer, sized first so that
	// the slices handed out never move.
	size := 0
	for _, a := range m.Resources {
		size += 1 + protowire.SizeVarint(uint64(anySize(a))) + anySize(a) - len(a.Value)
	}
	hdr := make([]byte, 0, size)
	out := make(mem.BufferSlice, 0, 1+2*len(m.Resources))
	out = append(out, mem.SliceBuffer(head))
	for _, a := range m.Resources {
		start := len(hdr)
		hdr = anyHeader(hdr, fieldSotwResources, a)
		out = append(out, mem.SliceBuffer(hdr[start:len(hdr):len(hdr)]))
		if len(a.Value) > 0 {
			out = append(out, mem.SliceBuffer(a.Value))
		}
	}
	return out, true
}

// plainResource reports whether r holds only a name, a version and a plain
// Any (as every Resource Horizon makes).
func plainResource(r *discoverypb.Resource) bool {
	return r != nil && r.ResourceName == nil && len(r.Aliases) == 0 && r.Ttl == nil && r.CacheControl == nil &&
		r.Metadata == nil && len(r.ProtoReflect().GetUnknown()) == 0 && plainAny(r.Resource)
}

// resourceHeaderSize returns how many bytes of a Resource's encoding (of
// version, name and a), as an element of
// DeltaDiscoveryResponse.resources, come before its Any's value (the
// header the codec writes), and the size of the whole Resource.
func resourceHeaderSize(version, name string, a *anypb.Any) (header, total int) {
	n := 0
	if version != "" {
		n += 1 + protowire.SizeBytes(len(version))
	}
	if name != "" {
		n += 1 + protowire.SizeBytes(len(name))
	}
	as := anySize(a)
	n += 1 + protowire.SizeBytes(as)
	total = n
	header = n - len(a.Value)
	return header + 1 + protowire.SizeVarint(uint64(total)), total
}

func encodeDelta(m *discoverypb.DeltaDiscoveryResponse) (mem.BufferSlice, bool) {
	if len(m.Resources) == 0 {
		return nil, false
	}
	for _, r := range m.Resources {
		if !plainResource(r) {
			return nil, false
		}
	}
	head, err := envelope(m, fieldDeltaResources)
	if err != nil {
		return nil, false
	}
	return deltaResources(head, len(m.Resources), func(i int) (string, string, *anypb.Any) {
		r := m.Resources[i]
		return r.Version, r.Name, r.Resource
	}), true
}

// deltaResources is an incremental response of the envelope head (its
// fields but the resources, encoded) and n resources: at(i) is the
// version, name and Any of the i-th.
func deltaResources(head []byte, n int, at func(int) (version, name string, a *anypb.Any)) mem.BufferSlice {
	size := 0
	for i := range n {
		h, _ := resourceHeaderSize(at(i))
		size += h
	}
	hdr := make([]byte, 0, size)
	out := make(mem.BufferSlice, 0, 1+2*n)
	out = append(out, mem.SliceBuffer(head))
	for i := range n {
		version, name, a := at(i)
		start := len(hdr)
		_, total := resourceHeaderSize(version, name, a)
		hdr = protowire.AppendTag(hdr, fieldDeltaResources, protowire.BytesType)
		hdr = protowire.AppendVarint(hdr, uint64(total))
		if version != "" {
			hdr = protowire.AppendTag(hdr, fieldResourceVersion, protowire.BytesType)
			hdr = protowire.AppendString(hdr, version)
		}
		if name != "" {
			hdr = protowire.AppendTag(hdr, fieldResourceName, protowire.BytesType)
			hdr = protowire.AppendString(hdr, name)
		}
		hdr = anyHeader(hdr, fieldResourceAny, a)
		out = append(out, mem.SliceBuffer(hdr[start:len(hdr):len(hdr)]))
		if v := a.Value; len(v) > 0 {
			out = append(out, mem.SliceBuffer(v))
		}
	}
	return out
}

// deltaResponse is an incremental response whose resources are entries of
// a view: the codec writes each as an element of
// DeltaDiscoveryResponse.resources (version, name, the entry's Any)
// straight from the entry, so no Resource message is made or kept for
// it. head holds the other fields.
type deltaResponse struct {
	head    *discoverypb.DeltaDiscoveryResponse
	entries []*entry
}

// ProtoReflect makes r a proto.Message for any other codec (a gRPC server
// not made with GRPCOptions): the equivalent DeltaDiscoveryResponse, with a
// Resource made for each entry.
func (r *deltaResponse) ProtoReflect() protoreflect.Message { return r.message().ProtoReflect() }

// message is the DeltaDiscoveryResponse r encodes.
func (r *deltaResponse) message() *discoverypb.DeltaDiscoveryResponse {
	m := proto.CloneOf(r.head)
	for _, e := range r.entries {
		m.Resources = append(m.Resources, &discoverypb.Resource{Name: e.name, Version: e.version, Resource: e.any})
	}
	return m
}

// encodeDeltaEntries encodes r as encodeDelta would r.message().
func encodeDeltaEntries(r *deltaResponse) (mem.BufferSlice, error) {
	head, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.head)
	if err != nil {
		return nil, err
	}
	if len(r.entries) == 0 {
		return mem.BufferSlice{mem.SliceBuffer(head)}, nil
	}
	return deltaResources(head, len(r.entries), func(i int) (string, string, *anypb.Any) {
		e := r.entries[i]
		return e.version, e.name, e.any
	}), nil
}
