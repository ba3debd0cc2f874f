package capture

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	for _, c := range []struct {
		in    string
		all   bool
		ports []uint16
		err   string
	}{
		{"*", true, nil, ""},
		{"", false, nil, ""},
		{" 8080, 7070,8080 ", false, []uint16{7070, 8080}, ""},
		{"0", false, nil, `"0" is not a port`},
		{"65536", false, nil, `"65536" is not a port`},
		{"http", false, nil, `"http" is not a port`},
	} {
		all, ports, err := ParsePorts(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || all != c.all || !slices.Equal(ports, c.ports) {
			t.Errorf("%q: %v %v %v, want %v %v", c.in, all, ports, err, c.all, c.ports)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	all, got, err := ParsePrefixes("10.96.0.1, 10.0.0.0/8, fd00::1/8, 10.0.0.0/8")
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.96.0.1/32"), netip.MustParsePrefix("fd00::/8")}
	if err != nil || all || !slices.Equal(got, want) {
		t.Errorf("got %v %v %v, want %v", all, got, err, want)
	}
	if _, _, err := ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Error("10.0.0.0/33 accepted")
	}
	if FormatPrefixes(want) != "10.0.0.0/8,10.96.0.1/32,fd00::/8" {
		t.Error(FormatPrefixes(want))
	}
}

// TestRulesIncludeLists: with include lists, only what they name is
// redirected, and an excluded port wins over an included one.
func TestRulesIncludeLists(t *testing.T) {
	s := Spec{
		InboundPort: 15006, OutboundPort: 15001, ProxyUID: 1337,
		IncludeInboundPorts: []uint16{7070, 8080}, ExcludeInboundPorts: []uint16{8080},
		IncludeOutboundIPRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	var got []string
	for _, r := range Rules(s) {
		got = append(got, r.Chain+": "+r.String())
	}
	want := []string{
		"prerouting: tcp dport 7070 redirect to :15006",
		"output: meta l4proto tcp meta skuid 1337 accept",
		"output: meta l4proto tcp ip daddr 127.0.0.0/8 accept",
		"output: meta l4proto tcp ip6 daddr ::1 accept",
		"output: meta l4proto tcp ip daddr 10.0.0.0/8 redirect to :15001",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := (Spec{InboundPort: 1, OutboundPort: 2}).Check(); err == nil {
		t.Error("proxy uid 0 accepted")
	}
}
