package xds

import (
	"slices"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rawbuffer "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
)

// Shared parts. Most of what a view's resources hold is the same from one
// resource to the next: the EDS config source, the load balancing config,
// the plain-TCP transport socket, the tlsMode metadata, a route's "/" match, the secrets, a
// SPIFFE ID matcher, a gateway's address, a locality. Rendering builds each
// such sub-message once (package variables for the fixed ones, parts for
// those that depend on the view or policy) and points every resource that
// holds it at the same message. That is sound because a view's resources are
// immutable once translated, as the memo and the server's marshalled entries
// already assume: nothing in Horizon writes to a message after Translate,
// and protobuf-go marshals a message that is reachable from several parents
// byte for byte as if each held its own copy (the deterministic marshal
// depends only on content). A test or tool that wants to edit a resource
// clones it first (proto.Clone), as the tests here do.

var (
	edsClusterType   = &cluster.Cluster_Type{Type: cluster.Cluster_EDS}
	edsClusterConfig = &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource}
	commonLBConfig   = commonLB()
	// plainTCPSocket is a sidecar cluster's transport_socket, what its
	// endpoints without tlsMode=mtls (their own or their locality's) get:
	// plain TCP.
	plainTCPSocket = typedSocket(wellknown.TransportSocketRawBuffer, &rawbuffer.RawBuffer{})
	mtlsMatch      = &structpb.Struct{Fields: map[string]*structpb.Value{tlsModeKey: structpb.NewStringValue(tlsModeMTLS)}}
	prefixRoot     = &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}}
	zeroDuration   = durationpb.New(0)
	// http2Options are the protocol options of a cluster whose port
	// carries HTTP/2.
	http2Options = map[string]*anyMsg{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&httpopts.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &core.Http2ProtocolOptions{}},
			}},
		}),
	}
	// upstreamTLSType is the type URL of an UpstreamTlsContext in an Any.
	upstreamTLSType = typeURL(&tlsv3.UpstreamTlsContext{})
)

// typeURL is the type URL anypb.New gives a message of m's type.
func typeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// parts are the sub-messages one render shares between the resources it
// builds that depend on its policy or ClusterSet (see Shared parts above).
// A translator fills them in as it needs them.
type parts struct {
	durations map[time.Duration]*durationpb.Duration
	outliers  map[*policyfile.OutlierDetection]*cluster.OutlierDetection
	retries   map[*policyfile.Retries]*route.RetryPolicy
	secrets   map[string]*tlsv3.SdsSecretConfig
	workloads map[workload]workloadID
	sanExact  map[string]*tlsv3.SubjectAltNameMatcher
	sanDomain []*tlsv3.SubjectAltNameMatcher // any ID of the trust domain
	commonTLS map[string][]byte              // a sidecar's CommonTlsContext, marshalled, by its SPIFFE IDs
	// secretBytes are the marshalled SdsSecretConfigs of SecretDefault
	// and SecretRootCA, anyIDBytes the marshalled matcher of any SPIFFE ID
	// of the trust domain.
	secretBytes [2][]byte
	anyIDBytes  []byte
	addresses   map[gatewayKey]*endpoint.LbEndpoint_Endpoint
	localities  map[discovery.Locality]*core.Locality
	weights     map[uint32]*wrapperspb.UInt32Value
	gateways    map[*discovery.Cluster]usableGateways
}

// workload is a service account of a namespace.
type workload struct{ namespace, serviceAccount string }

// workloadID is a workload's SPIFFE ID, or why it has none.
type workloadID struct {
	id  string
	err error
}

// gatewayKey is an address and port an assignment sends traffic to.
type gatewayKey struct {
	address string
	port    uint32
}

// usableGateways is what usableGateways found for a cluster: the gateways,
// and the notes it made.
type usableGateways struct {
	gateways []discovery.Gateway
	notes    []string
}

// duration returns d as a shared Duration.
func (p *parts) duration(d time.Duration) *durationpb.Duration {
	if m, ok := p.durations[d]; ok {
		return m
	}
	if p.durations == nil {
		p.durations = map[time.Duration]*durationpb.Duration{}
	}
	m := durationpb.New(d)
	p.durations[d] = m
	return m
}

// outlierDetection returns outlierDetection(od), shared by every cluster of
// the policy rule od belongs to.
func (p *parts) outlierDetection(od *policyfile.OutlierDetection) *cluster.OutlierDetection {
	if od == nil {
		return nil
	}
	if m, ok := p.outliers[od]; ok {
		return m
	}
	if p.outliers == nil {
		p.outliers = map[*policyfile.OutlierDetection]*cluster.OutlierDetection{}
	}
	m := outlierDetection(od)
	p.outliers[od] = m
	return m
}

// sidecarRetries returns sidecarRetries(r), shared by every route of the
// policy rule r belongs to.
func (p *parts) sidecarRetries(r *policyfile.Retries) *route.RetryPolicy {
	if r == nil {
		return nil
	}
	if m, ok := p.retries[r]; ok {
		return m
	}
	if p.retries == nil {
		p.retries = map[*policyfile.Retries]*route.RetryPolicy{}
	}
	m := sidecarRetries(r)
	p.retries[r] = m
	return m
}

// weight returns w as a shared UInt32Value. Only weights that are final may
// be shared: a locality's, which assemble adds up, is not.
func (p *parts) weight(w uint32) *wrapperspb.UInt32Value {
	if m, ok := p.weights[w]; ok {
		return m
	}
	if p.weights == nil {
		p.weights = map[uint32]*wrapperspb.UInt32Value{}
	}
	m := wrapperspb.UInt32(w)
	p.weights[w] = m
	return m
}

// locality returns l as a shared Envoy locality.
func (p *parts) locality(l discovery.Locality) *core.Locality {
	if m, ok := p.localities[l]; ok {
		return m
	}
	if p.localities == nil {
		p.localities = map[discovery.Locality]*core.Locality{}
	}
	m := &core.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.SubZone}
	p.localities[l] = m
	return m
}

// endpointAddress returns the host identifier of an LbEndpoint for an
// address and port, shared by every assignment that sends traffic there (a
// gateway's address is in every assignment of its network's services).
func (p *parts) endpointAddress(address string, port uint32) *endpoint.LbEndpoint_Endpoint {
	k := gatewayKey{address, port}
	if m, ok := p.addresses[k]; ok {
		return m
	}
	if p.addresses == nil {
		p.addresses = map[gatewayKey]*endpoint.LbEndpoint_Endpoint{}
	}
	m := &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(address, port)}}
	p.addresses[k] = m
	return m
}

// secret returns SecretRef(provider, name), shared.
func (p *parts) secret(provider SVIDProvider, name string) *tlsv3.SdsSecretConfig {
	if m, ok := p.secrets[name]; ok {
		return m
	}
	if p.secrets == nil {
		p.secrets = map[string]*tlsv3.SdsSecretConfig{}
	}
	m := SecretRef(provider, name)
	p.secrets[name] = m
	return m
}

// sanExactMatcher returns the matcher of one SPIFFE ID, shared.
func (p *parts) sanExactMatcher(id string) *tlsv3.SubjectAltNameMatcher {
	if m, ok := p.sanExact[id]; ok {
		return m
	}
	if p.sanExact == nil {
		p.sanExact = map[string]*tlsv3.SubjectAltNameMatcher{}
	}
	m := &tlsv3.SubjectAltNameMatcher{
		SanType: tlsv3.SubjectAltNameMatcher_URI,
		Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: id}},
	}
	p.sanExact[id] = m
	return m
}

// Field numbers of the messages appendUpstreamTLS and appendCommonTLS
// encode, from their descriptors.
var (
	upstreamTLSCommonField = fieldNumber(&tlsv3.UpstreamTlsContext{}, "common_tls_context")
	upstreamTLSSNIField    = fieldNumber(&tlsv3.UpstreamTlsContext{}, "sni")
	commonTLSSecretsField  = fieldNumber(&tlsv3.CommonTlsContext{}, "tls_certificate_sds_secret_configs")
	commonTLSCombinedField = fieldNumber(&tlsv3.CommonTlsContext{}, "combined_validation_context")
	combinedDefaultField   = fieldNumber(&tlsv3.CommonTlsContext_CombinedCertificateValidationContext{}, "default_validation_context")
	combinedSDSField       = fieldNumber(&tlsv3.CommonTlsContext_CombinedCertificateValidationContext{}, "validation_context_sds_secret_config")
	validationSANsField    = fieldNumber(&tlsv3.CertificateValidationContext{}, "match_typed_subject_alt_names")
	sanTypeField           = fieldNumber(&tlsv3.SubjectAltNameMatcher{}, "san_type")
	sanMatcherField        = fieldNumber(&tlsv3.SubjectAltNameMatcher{}, "matcher")
	stringExactField       = fieldNumber(&matcher.StringMatcher{}, "exact")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if fd == nil {
		panic("xds: " + string(m.ProtoReflect().Descriptor().FullName()) + " has no field " + string(name))
	}
	return fd.Number()
}

// mustMarshal marshals a message Horizon built (see mustAny).
func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic("xds: marshal " + string(proto.MessageName(m)) + ": " + err.Error())
	}
	return b
}

// messageFieldSize is the size of a message-typed field holding an n-byte
// message.
func messageFieldSize(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// appendMessageField appends a message-typed field holding the marshalled
// message m: what protobuf-go writes for a set message field (even an empty
// one) and for each element of a repeated one.
func appendMessageField(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// exactURISANSize is the size of appendExactURISAN's encoding.
func exactURISANSize(id string) int {
	return protowire.SizeTag(sanTypeField) + protowire.SizeVarint(uint64(tlsv3.SubjectAltNameMatcher_URI)) +
		messageFieldSize(sanMatcherField, messageFieldSize(stringExactField, len(id)))
}

// appendExactURISAN appends the encoding of the SubjectAltNameMatcher that
// matches the URI SAN id exactly (translator.peerSANs): san_type URI, then
// matcher {exact: id}, the only fields set, in number order (exact is a
// oneof field of a message with no other field set).
func appendExactURISAN(b []byte, id string) []byte {
	b = protowire.AppendTag(b, sanTypeField, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(tlsv3.SubjectAltNameMatcher_URI))
	b = protowire.AppendTag(b, sanMatcherField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(messageFieldSize(stringExactField, len(id))))
	b = protowire.AppendTag(b, stringExactField, protowire.BytesType)
	return protowire.AppendString(b, id)
}

// appendCommonTLS appends to b the encoding of the CommonTlsContext that
// translator.commonTLS builds with no ALPN from the SAN matchers of the
// SPIFFE IDs ids (exact URI matchers), or, with none, from the one matcher
// whose encoding is anyID: tls_certificate_sds_secret_configs
// [secretDefault], then combined_validation_context
// {default_validation_context {match_typed_subject_alt_names: the
// matchers}, validation_context_sds_secret_config: secretRootCA}. Those are
// the only fields set; protobuf-go writes a message's regular fields in
// number order and then its oneofs (combined_validation_context is one),
// which here is number order too. It allocates b once, to size.
// TestCommonTLSEncoding holds it to proto.Marshal.
func appendCommonTLS(b, secretDefault, secretRootCA []byte, ids []string, anyID []byte) []byte {
	validation := 0
	for _, id := range ids {
		validation += messageFieldSize(validationSANsField, exactURISANSize(id))
	}
	if len(ids) == 0 {
		validation = messageFieldSize(validationSANsField, len(anyID))
	}
	combined := messageFieldSize(combinedDefaultField, validation) + messageFieldSize(combinedSDSField, len(secretRootCA))
	size := messageFieldSize(commonTLSSecretsField, len(secretDefault)) + messageFieldSize(commonTLSCombinedField, combined)
	b = slices.Grow(b, size)
	b = appendMessageField(b, commonTLSSecretsField, secretDefault)
	b = protowire.AppendTag(b, commonTLSCombinedField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(combined))
	b = protowire.AppendTag(b, combinedDefaultField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(validation))
	for _, id := range ids {
		b = protowire.AppendTag(b, validationSANsField, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(exactURISANSize(id)))
		b = appendExactURISAN(b, id)
	}
	if len(ids) == 0 {
		b = appendMessageField(b, validationSANsField, anyID)
	}
	return appendMessageField(b, combinedSDSField, secretRootCA)
}

// upstreamTLSSize is the size of appendUpstreamTLS's encoding.
func upstreamTLSSize(commonTLS []byte, sni string) int {
	n := protowire.SizeTag(upstreamTLSCommonField) + protowire.SizeBytes(len(commonTLS))
	if sni != "" {
		n += protowire.SizeTag(upstreamTLSSNIField) + protowire.SizeBytes(len(sni))
	}
	return n
}

// appendUpstreamTLS appends to b the encoding of an UpstreamTlsContext whose
// common_tls_context is the message commonTLS encodes and whose sni is sni,
// every other field unset: the bytes proto.Marshal gives that message. Both
// fields are regular (not oneof) fields, which protobuf-go writes in field
// number order, and an unset string is not written.
// TestUpstreamTLSEncoding holds it to proto.Marshal.
func appendUpstreamTLS(b, commonTLS []byte, sni string) []byte {
	b = appendMessageField(b, upstreamTLSCommonField, commonTLS)
	if sni != "" {
		b = protowire.AppendTag(b, upstreamTLSSNIField, protowire.BytesType)
		b = protowire.AppendString(b, sni)
	}
	return b
}
