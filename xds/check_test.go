package xds

import (
	"path/filepath"
	"regexp"
	"testing"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// domainPattern is go-control-plane's rule for a virtual host domain
// (route_components.pb.validate.go, _VirtualHost_Domains_Pattern).
var domainPattern = regexp.MustCompile("^[^\x00\n\r]*$")

// domainCases are virtual host domains around the rule's edges: the three
// refused bytes anywhere, invalid UTF-8 next to them, and characters that
// look like line breaks but are not refused.
var domainCases = []string{
	"", "*", "echo.demo.svc.cluster.local", "echo.demo.svc.cluster.local:8080", "[fd00::1]:80", "10.0.0.1",
	"\x00", "\n", "\r", "a\x00", "\x00a", "a\nb", "a\r\nb", "\r\n",
	"\xff", "\xc0", "\xc0\n", "\xe2\x80", "\xe2\x80\r", "\xf0\x9f\x98", "\xed\xa0\x80",
	"ü", "日本", "\u2028", "\u0085", "\t", "\v", "\f", " ", "\x7f", "\x01",
	"\U0010ffff", "\ufffd", "a\xffb\x00",
}

// TestValidDomain: validDomain decides as go-control-plane's pattern does,
// both on its own and inside a virtual host's validation.
func TestValidDomain(t *testing.T) {
	for _, d := range domainCases {
		checkDomain(t, d)
	}
}

func FuzzValidDomain(f *testing.F) {
	for _, d := range domainCases {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d string) { checkDomain(t, d) })
}

func checkDomain(t *testing.T, d string) {
	t.Helper()
	want := domainPattern.MatchString(d)
	if got := validDomain(d); got != want {
		t.Fatalf("validDomain(%q) = %v, pattern says %v", d, got, want)
	}
	vh := &route.VirtualHost{Name: "vh", Domains: []string{d}}
	if ok := vh.ValidateAll() == nil; ok != want {
		t.Fatalf("domain %q: VirtualHost.ValidateAll passes = %v, pattern says %v", d, ok, want)
	}
}

// routeEdits break a route configuration in the ways go-control-plane's
// validation refuses (and a few it accepts), one at a time.
var routeEdits = []struct {
	name string
	edit func(rc *route.RouteConfiguration)
}{
	{"none", func(*route.RouteConfiguration) {}},
	{"domain with LF", func(rc *route.RouteConfiguration) { rc.VirtualHosts[0].Domains[0] = "a\nb" }},
	{"last domain with NUL", func(rc *route.RouteConfiguration) {
		vh := rc.VirtualHosts[len(rc.VirtualHosts)-1]
		vh.Domains[len(vh.Domains)-1] += "\x00"
	}},
	{"domain with invalid UTF-8", func(rc *route.RouteConfiguration) { rc.VirtualHosts[0].Domains[0] = "\xff\xfe" }},
	{"no domains", func(rc *route.RouteConfiguration) { rc.VirtualHosts[0].Domains = nil }},
	{"no virtual host name", func(rc *route.RouteConfiguration) { rc.VirtualHosts[0].Name = "" }},
	{"no domains and no name", func(rc *route.RouteConfiguration) {
		rc.VirtualHosts[0].Domains, rc.VirtualHosts[0].Name = nil, ""
	}},
	{"route without match", func(rc *route.RouteConfiguration) { rc.VirtualHosts[0].Routes[0].Match = nil }},
	{"route without action", func(rc *route.RouteConfiguration) { rc.VirtualHosts[0].Routes[0].Action = nil }},
	{"bad domain and bad route", func(rc *route.RouteConfiguration) {
		rc.VirtualHosts[0].Domains[0] = "\r"
		rc.VirtualHosts[len(rc.VirtualHosts)-1].Routes[0].Match = nil
	}},
	{"nil virtual host", func(rc *route.RouteConfiguration) { rc.VirtualHosts = append(rc.VirtualHosts, nil) }},
	{"no virtual hosts", func(rc *route.RouteConfiguration) { rc.VirtualHosts = nil }},
	{"virtual host without routes", func(rc *route.RouteConfiguration) { rc.VirtualHosts[0].Routes = nil }},
	{"header to remove with CR", func(rc *route.RouteConfiguration) {
		rc.VirtualHosts[0].RequestHeadersToRemove = []string{"x\r"}
	}},
	{"max direct response body too big", func(rc *route.RouteConfiguration) {
		rc.MaxDirectResponseBodySizeBytes = wrapperspb.UInt32(1 << 31)
	}},
}

// TestValidRoutesMatchesValidateAll: on every route configuration of every
// golden view, each broken as routeEdits say, validate decides as
// ValidateAll does, with the same error.
func TestValidRoutesMatchesValidateAll(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	checked, refused := 0, 0
	for _, in := range inputs {
		cs, g, p := loadCase(t, in)
		res, err := Translate(cs, g, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, rc := range res.Routes {
			for _, e := range routeEdits {
				broken := proto.Clone(rc).(*route.RouteConfiguration)
				e.edit(broken)
				if compareValidation(t, broken, filepath.Base(in)+": "+e.name) != nil {
					refused++
				}
				checked++
			}
		}
	}
	if checked == 0 || refused == 0 {
		t.Fatalf("%d route configurations checked, %d refused: the cases test nothing", checked, refused)
	}
}

// compareValidation fails t unless validate(rc) is rc.ValidateAll(); it
// returns the error.
func compareValidation(t *testing.T, rc *route.RouteConfiguration, what string) error {
	t.Helper()
	want := rc.ValidateAll()
	got := validate(rc)
	if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
		t.Fatalf("%s: validate = %v, ValidateAll = %v", what, got, want)
	}
	if validRoutes(rc) != (want == nil) {
		t.Fatalf("%s: validRoutes = %v, ValidateAll = %v", what, validRoutes(rc), want)
	}
	return got
}

// FuzzValidRoutes: a sidecar route configuration with a fuzzed domain, name
// and route edit in a fuzzed virtual host.
func FuzzValidRoutes(f *testing.F) {
	cs, g, p := loadCase(f, "testdata/golden/sidecar-east-1.in.yaml")
	res, err := Translate(cs, g, p)
	if err != nil || len(res.Routes) == 0 {
		f.Fatalf("no routes: %v", err)
	}
	base := res.Routes[0]
	f.Add(0, "echo.demo", "vh", uint8(0))
	f.Add(1, "a\nb", "", uint8(1))
	f.Add(2, "\xff", "x", uint8(2))
	f.Fuzz(func(t *testing.T, at int, domain, name string, edit uint8) {
		rc := proto.Clone(base).(*route.RouteConfiguration)
		vh := rc.VirtualHosts[uint(at)%uint(len(rc.VirtualHosts))]
		switch edit % 4 {
		case 1:
			vh.Domains = append(vh.Domains, domain)
		case 2:
			vh.Domains = []string{domain}
			vh.Name = name
		case 3:
			vh.Routes[0].Match = nil
			vh.Domains[0] = domain
		default:
			vh.Domains[0] = domain
		}
		compareValidation(t, rc, "fuzzed")
	})
}

// TestCopyVirtualHostCopiesEveryField: for every field of go-control-plane's
// VirtualHost, a virtual host with only that field set is copied whole, so
// that validRoutes's stand-in is validated on everything but the domains.
func TestCopyVirtualHostCopiesEveryField(t *testing.T) {
	fields := (&route.VirtualHost{}).ProtoReflect().Descriptor().Fields()
	if fields.Len() == 0 {
		t.Fatal("VirtualHost has no fields")
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		src := &route.VirtualHost{}
		populate(src.ProtoReflect(), fd)
		if !src.ProtoReflect().Has(fd) {
			t.Fatalf("%s: could not set the field", fd.Name())
		}
		var dst route.VirtualHost
		copyVirtualHost(&dst, src)
		if !proto.Equal(&dst, src) {
			t.Errorf("copyVirtualHost does not copy %s", fd.Name())
		}
	}
}

// populate sets fd of m to a value that is not its default.
func populate(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
	switch {
	case fd.IsMap():
		mp := m.Mutable(fd).Map()
		mp.Set(scalar(fd.MapKey()).MapKey(), elementOf(mp.NewValue(), fd.MapValue()))
	case fd.IsList():
		l := m.Mutable(fd).List()
		l.Append(elementOf(l.NewElement(), fd))
	case fd.Message() != nil:
		m.Set(fd, m.NewField(fd))
	default:
		m.Set(fd, scalar(fd))
	}
}

// elementOf is a list element or map value for fd: a new message, or a
// scalar that is not the default.
func elementOf(v protoreflect.Value, fd protoreflect.FieldDescriptor) protoreflect.Value {
	if fd.Message() != nil {
		return v
	}
	return scalar(fd)
}

func scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(1)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(1)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(1)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(1)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(1)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("x"))
	}
	panic("unexpected kind " + fd.Kind().String())
}
