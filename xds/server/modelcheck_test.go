package server

// The model's checks (model_test.go): every response against invariants
// I1-I8, and the drain to quiescence after each step.

import (
	"fmt"
	"maps"
	"slices"
	"time"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

// Responses.

// reply answers a response: ACK, or NACK when the stream rejects it.
func (m *model) reply(s *modelStream, typ string, mt *modelType) {
	r := mt.unanswered
	mt.unanswered = nil
	if mt.rejectNext {
		mt.rejectNext = false
		m.logf("stream %d NACKs %s nonce %s", s.id, xds.ShortType(typ), r.nonce)
		m.stats["nacks"]++
		detail := &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "rejected by the model"}
		if s.delta {
			m.send(s, nil, &discoverypb.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: r.nonce, ErrorDetail: detail})
		} else {
			m.send(s, &discoverypb.DiscoveryRequest{TypeUrl: typ, ResourceNames: mt.request(), VersionInfo: mt.ackedVersion, ResponseNonce: r.nonce, ErrorDetail: detail}, nil)
		}
		return
	}
	mt.acked, mt.ackedVer = maps.Clone(mt.sent), maps.Clone(mt.sentVer)
	mt.nackedSotw = nil
	if s.delta {
		m.send(s, nil, &discoverypb.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: r.nonce})
		return
	}
	mt.ackedVersion, mt.ackedState = r.version, maps.Clone(mt.sent)
	m.send(s, &discoverypb.DiscoveryRequest{TypeUrl: typ, ResourceNames: mt.request(), VersionInfo: r.version, ResponseNonce: r.nonce}, nil)
}

func (m *model) onSotw(s *modelStream, r *discoverypb.DiscoveryResponse) {
	typ := r.GetTypeUrl()
	mt := s.types[typ]
	if mt == nil {
		m.fail(s, "I1: a %s response, a type the stream never asked for", typ)
	}
	if mt.unanswered != nil {
		m.fail(s, "I6: a second %s response (nonce %s) before the client answered nonce %s", xds.ShortType(typ), r.GetNonce(), mt.unanswered.nonce)
	}
	got := map[string]string{}
	for _, a := range r.GetResources() {
		n, c, err := decode(a)
		if err != nil {
			m.fail(s, "undecodable %s resource: %v", xds.ShortType(typ), err)
		}
		if _, dup := got[n]; dup {
			m.fail(s, "%s response carries %s twice", xds.ShortType(typ), n)
		}
		got[n] = c
	}
	m.checkResources(s, typ, mt, got)
	want := m.expected(s, typ, mt)
	if isFullState(typ) && !sameNames(got, want) {
		m.fail(s, "I3: a %s response carries %v, the full state of the subscription is %v", xds.ShortType(typ), slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	if nk := mt.nackedSotw; nk != nil && nk.version == r.GetVersionInfo() && maps.Equal(nk.content, got) {
		m.fail(s, "I5: %s version %s was NACKed and is resent unchanged", xds.ShortType(typ), r.GetVersionInfo())
	}
	// What the server records the client holds: a listener or cluster
	// response's state; for endpoints and routes, each covered resource of
	// the view at what was last sent of it (a name past the split, never
	// sent, is not held). Names the view no longer has are forgotten.
	before := mt.sent
	redundant := maps.Equal(got, before)
	if isFullState(typ) {
		mt.sent = got
	} else {
		redundant = true
		for n, c := range got {
			redundant = redundant && before[n] == c
		}
		mt.sent = map[string]string{}
		for n := range want {
			if c, ok := got[n]; ok {
				mt.sent[n] = c
			} else if c, ok := before[n]; ok {
				mt.sent[n] = c
			}
		}
	}
	if redundant && !mt.mustAnswer && !(mt.quietReconnect && modelKnownDefects["sotw-quiet-reconnect"]) {
		m.fail(s, "I7: a %s response (version %s, %v) that changes nothing the client holds (%v)", xds.ShortType(typ), r.GetVersionInfo(), slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(before)))
	}
	m.checkReferences(s, typ, got)
	mt.mustAnswer = false
	mt.nonce = r.GetNonce()
	mt.unanswered = &modelResp{nonce: r.GetNonce(), version: r.GetVersionInfo()}
	if mt.rejectNext {
		mt.nackedSotw = &sotwNACK{version: r.GetVersionInfo(), content: got}
	}
	m.logf("stream %d got %s version %.8s nonce %s: %v", s.id, xds.ShortType(typ), r.GetVersionInfo(), r.GetNonce(), slices.Sorted(maps.Keys(got)))
	m.stats["sotw "+xds.ShortType(typ)]++
	if !isFullState(typ) && m.owed(s, typ, mt) {
		m.stats["sotw partial"]++
	}
	if !s.paused {
		m.reply(s, typ, mt)
	}
}

func (m *model) onDelta(s *modelStream, r *discoverypb.DeltaDiscoveryResponse) {
	typ := r.GetTypeUrl()
	mt := s.types[typ]
	if mt == nil {
		m.fail(s, "I1: a %s response, a type the stream never asked for", typ)
	}
	if mt.unanswered != nil {
		m.fail(s, "I6: a second %s response (nonce %s) before the client answered nonce %s", xds.ShortType(typ), r.GetNonce(), mt.unanswered.nonce)
	}
	got, vers := map[string]string{}, map[string]string{}
	for _, res := range r.GetResources() {
		n, c, err := decode(res.GetResource())
		if err != nil {
			m.fail(s, "undecodable %s resource: %v", xds.ShortType(typ), err)
		}
		if n != res.GetName() {
			m.fail(s, "%s resource named %q carries %q", xds.ShortType(typ), res.GetName(), n)
		}
		if _, dup := got[n]; dup {
			m.fail(s, "%s response carries %s twice", xds.ShortType(typ), n)
		}
		got[n], vers[n] = c, res.GetVersion()
		if old, ok := mt.nackedDelta[n]; ok && old == c {
			m.fail(s, "I5: %s %s was NACKed and is resent unchanged", xds.ShortType(typ), n)
		}
	}
	m.checkResources(s, typ, mt, got)
	view := m.view(s.group)[typ]
	for _, n := range r.GetRemovedResources() {
		if _, ok := got[n]; ok {
			m.fail(s, "I4: %s %s is both sent and removed", xds.ShortType(typ), n)
		}
		_, held := mt.sent[n]
		_, exists := view[n]
		if !held && !(mt.names[n] && !exists) {
			m.fail(s, "I4: %s response removes %s, which the client does not hold (holds %v)", xds.ShortType(typ), n, slices.Sorted(maps.Keys(mt.sent)))
		}
		if exists && mt.covers(n) {
			m.fail(s, "I4: %s response removes %s, which the view has and the subscription covers", xds.ShortType(typ), n)
		}
	}
	before := maps.Clone(mt.sent)
	maps.Copy(mt.sent, got)
	maps.Copy(mt.sentVer, vers)
	for _, n := range r.GetRemovedResources() {
		delete(mt.sent, n)
		delete(mt.sentVer, n)
	}
	if maps.Equal(before, mt.sent) && !mt.mustAnswer && !mt.mayAnswer && len(r.GetRemovedResources()) == 0 {
		m.fail(s, "I7: a %s response (%d resources) that changes nothing the client holds", xds.ShortType(typ), len(got))
	}
	m.checkReferences(s, typ, got)
	mt.mustAnswer, mt.mayAnswer = false, false
	mt.nonce = r.GetNonce()
	mt.unanswered = &modelResp{nonce: r.GetNonce()}
	if mt.rejectNext {
		if mt.nackedDelta == nil {
			mt.nackedDelta = map[string]string{}
		}
		maps.Copy(mt.nackedDelta, got)
	}
	m.logf("stream %d got %s nonce %s: %v removed %v", s.id, xds.ShortType(typ), r.GetNonce(), slices.Sorted(maps.Keys(got)), r.GetRemovedResources())
	m.stats["delta "+xds.ShortType(typ)]++
	m.stats["delta removed"] += len(r.GetRemovedResources())
	if !s.paused {
		m.reply(s, typ, mt)
	}
}

// checkResources checks I1 and I2 for the resources of one response.
func (m *model) checkResources(s *modelStream, typ string, mt *modelType, got map[string]string) {
	m.t.Helper()
	view := m.view(s.group)[typ]
	for n, c := range got {
		if !mt.covers(n) {
			m.fail(s, "I1: %s %s is not covered by the subscription (wildcard %v, names %v)", xds.ShortType(typ), n, mt.wildcard, slices.Sorted(maps.Keys(mt.names)))
		}
		want, ok := view[n]
		switch {
		case !ok:
			m.fail(s, "I2: %s %s is not in the stream's view", xds.ShortType(typ), n)
		case want != c:
			m.fail(s, "I2: %s %s is not the view's current content", xds.ShortType(typ), n)
		}
	}
}

func sameNames(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for n := range a {
		if _, ok := b[n]; !ok {
			return false
		}
	}
	return true
}

// checkReferences checks I8: a listener or route sent to a stream that
// holds its clusters by wildcard names only clusters the stream holds.
func (m *model) checkReferences(s *modelStream, typ string, got map[string]string) {
	m.t.Helper()
	if typ != resourcev3.ListenerType && typ != resourcev3.RouteType {
		return
	}
	cds := s.types[resourcev3.ClusterType]
	if cds == nil || !cds.wildcard || cds.unanswered != nil || cds.nonce == "" || s.paused {
		return
	}
	for n, c := range got {
		var msg proto.Message
		if typ == resourcev3.ListenerType {
			msg = m.newListener()
		} else {
			msg = m.newRoute()
		}
		if err := proto.Unmarshal([]byte(c), msg); err != nil {
			m.fail(s, "%v", err)
		}
		m.stats["references checked"]++
		for _, ref := range clusterRefs(msg.ProtoReflect()) {
			if _, ok := cds.sent[ref]; !ok {
				if modelKnownDefects["split-order"] && m.split && m.owed(s, resourcev3.ClusterType, cds) {
					m.stats["I8 tolerated (split-order)"]++
					continue
				}
				m.fail(s, "I8: %s %s references cluster %s, which the stream does not hold", xds.ShortType(typ), n, ref)
			}
		}
	}
}

func (m *model) newListener() proto.Message { return newMessage(resourcev3.ListenerType) }
func (m *model) newRoute() proto.Message    { return newMessage(resourcev3.RouteType) }

func newMessage(typeURL string) proto.Message {
	a := &anypb.Any{TypeUrl: typeURL}
	msg, err := a.UnmarshalNew()
	if err != nil {
		panic(err)
	}
	return msg
}

// clusterRefs lists the clusters a listener or route configuration sends
// traffic to: route actions' cluster and weighted clusters, TCP proxies'
// cluster, through typed configs.
func clusterRefs(m protoreflect.Message) []string {
	var out []string
	full := m.Descriptor().FullName()
	get := func(field protoreflect.Name) {
		if f := m.Descriptor().Fields().ByName(field); f != nil && m.Has(f) {
			out = append(out, m.Get(f).String())
		}
	}
	switch full {
	case "envoy.config.route.v3.RouteAction", "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":
		get("cluster")
	case "envoy.config.route.v3.WeightedCluster.ClusterWeight":
		get("name")
	case "google.protobuf.Any":
		a := m.Interface().(*anypb.Any)
		if inner, err := a.UnmarshalNew(); err == nil {
			return clusterRefs(inner.ProtoReflect())
		}
		return nil
	}
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case f.IsList() && f.Message() != nil:
			for i := range v.List().Len() {
				out = append(out, clusterRefs(v.List().Get(i).Message())...)
			}
		case f.IsMap() && f.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				out = append(out, clusterRefs(mv.Message())...)
				return true
			})
		case !f.IsList() && !f.IsMap() && f.Message() != nil:
			out = append(out, clusterRefs(v.Message())...)
		}
		return true
	})
	return out
}

// Draining.

// owed reports whether a stream's type still waits for the server: the
// model says it must receive something.
func (m *model) owed(s *modelStream, typ string, mt *modelType) bool {
	if mt.unanswered != nil {
		return false // ACK-paced: nothing more until the client answers
	}
	if m.behindSplit(s, typ) {
		return false // even a first request's answer waits (behindSplit)
	}
	if mt.mustAnswer {
		return true
	}
	return m.differs(s, typ, mt)
}

// behindSplit reports whether a type waits for one before it in push order
// (CDS, EDS, LDS, RDS) whose state came split and is not all sent: the
// server sends a listener or route only once the clusters it may reference
// are all out (xds_protocol#eventual-consistency-considerations), so a
// client that does not answer the first part (paused) is owed nothing of
// the later types meanwhile.
func (m *model) behindSplit(s *modelStream, typ string) bool {
	for _, before := range allTypes {
		if before == typ {
			return false
		}
		if mt := s.types[before]; mt != nil && mt.unanswered != nil && m.differs(s, before, mt) {
			return true
		}
	}
	return false
}

// differs reports whether what a stream holds of a type (what it was sent,
// answered or not) differs from what it must hold.
func (m *model) differs(s *modelStream, typ string, mt *modelType) bool {
	want := m.expected(s, typ, mt)
	if isFullState(typ) || s.delta {
		held := map[string]string{}
		for n, c := range mt.sent {
			if mt.covers(n) || s.delta {
				held[n] = c
			}
		}
		return !maps.Equal(held, want)
	}
	for n, c := range want {
		if mt.sent[n] != c {
			return true
		}
	}
	return false
}

// drain handles responses until no stream is owed anything, then for the
// idle bound.
func (m *model) drain() {
	m.t.Helper()
	deadline := time.Now().Add(xdstest.Timeout)
	for {
		var waiting []string
		for _, s := range m.streams {
			for _, typ := range allTypes {
				if mt := s.types[typ]; mt != nil && m.owed(s, typ, mt) {
					waiting = append(waiting, fmt.Sprintf("stream %d %s", s.id, xds.ShortType(typ)))
				}
			}
		}
		wait := m.idle
		if len(waiting) > 0 {
			wait = time.Until(deadline)
		}
		select {
		case ev := <-m.events:
			m.handle(ev)
		case <-time.After(wait):
			if len(waiting) > 0 {
				m.dumpOwed()
				m.fail(nil, "nothing came within %v; owed: %v", xdstest.Timeout, waiting)
			}
			return
		}
	}
}

func (m *model) dumpOwed() {
	for _, s := range m.streams {
		for _, typ := range allTypes {
			if mt := s.types[typ]; mt != nil && m.owed(s, typ, mt) {
				m.logf("owed: stream %d %s must=%v holds %v want %v", s.id, xds.ShortType(typ), mt.mustAnswer,
					slices.Sorted(maps.Keys(mt.sent)), slices.Sorted(maps.Keys(m.expected(s, typ, mt))))
			}
		}
	}
}

func (m *model) handle(ev modelEvent) {
	s := ev.stream
	if ev.gen != s.gen || !slices.Contains(m.streams, s) {
		return // a closed stream's
	}
	switch {
	case ev.err != nil:
		m.fail(s, "the stream ended: %v", ev.err)
	case ev.sotw != nil:
		m.onSotw(s, ev.sotw)
	default:
		m.onDelta(s, ev.delta)
	}
}
