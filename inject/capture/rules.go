package capture

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Table is the nftables table capture owns: inet horizon.
const Table = "horizon"

// The table's two chains.
const (
	ChainInbound  = "prerouting"
	ChainOutbound = "output"
)

// Rule is one nftables rule of a chain: what it matches, as nft prints it
// and as netlink expressions, and where it sends a match.
type Rule struct {
	Chain    string
	Matches  []Match
	Redirect uint16 // 0: accept (no redirect)
}

// Match is one condition of a rule.
type Match struct {
	Text  string
	Exprs []expr.Any
}

// String is the rule in nft syntax.
func (r Rule) String() string {
	var b strings.Builder
	for _, m := range r.Matches {
		b.WriteString(m.Text)
		b.WriteByte(' ')
	}
	if r.Redirect != 0 {
		fmt.Fprintf(&b, "redirect to :%d", r.Redirect)
	} else {
		b.WriteString("accept")
	}
	return b.String()
}

func (r Rule) exprs() []expr.Any {
	var out []expr.Any
	for _, m := range r.Matches {
		out = append(out, m.Exprs...)
	}
	if r.Redirect != 0 {
		return append(out,
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Redirect)},
			&expr.Redir{RegisterProtoMin: 1},
		)
	}
	return append(out, &expr.Verdict{Kind: expr.VerdictAccept})
}

// Rules are the rules of s, inbound chain first, each chain in order.
func Rules(s Spec) []Rule {
	var rules []Rule
	in := func(r Rule) { r.Chain = ChainInbound; rules = append(rules, r) }
	out := func(r Rule) { r.Chain = ChainOutbound; rules = append(rules, r) }

	// Inbound.
	if s.AllInbound {
		for _, p := range s.ExcludeInboundPorts {
			in(Rule{Matches: []Match{dport(p)}})
		}
		in(Rule{Matches: []Match{tcp()}, Redirect: s.InboundPort})
	} else {
		for _, p := range s.IncludeInboundPorts {
			if contains(s.ExcludeInboundPorts, p) {
				continue
			}
			in(Rule{Matches: []Match{dport(p)}, Redirect: s.InboundPort})
		}
	}

	// Outbound: the proxy's own connections and loopback first, so that
	// the proxy reaching its destination, and anyone reaching the proxy on
	// 127.0.0.1:OutboundPort, never loop.
	out(Rule{Matches: []Match{tcp(), skuid(s.ProxyUID)}})
	out(Rule{Matches: []Match{tcp(), daddr(netip.MustParsePrefix("127.0.0.0/8"))}})
	out(Rule{Matches: []Match{tcp(), daddr(netip.MustParsePrefix("::1/128"))}})
	for _, p := range s.ExcludeOutboundPorts {
		out(Rule{Matches: []Match{dport(p)}})
	}
	for _, p := range s.ExcludeOutboundIPRanges {
		out(Rule{Matches: []Match{tcp(), daddr(p)}})
	}
	if s.AllOutbound {
		out(Rule{Matches: []Match{tcp()}, Redirect: s.OutboundPort})
	} else {
		for _, p := range s.IncludeOutboundIPRanges {
			out(Rule{Matches: []Match{tcp(), daddr(p)}, Redirect: s.OutboundPort})
		}
	}
	return rules
}

func contains(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

// Render is the table s programs, in nft syntax, as `nft list table inet
// horizon` prints it once Apply programmed it (what `horizon capture
// --dry-run` prints; `nft -f` reads it).
func Render(s Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", Table)
	rules := Rules(s)
	for i, chain := range []string{ChainInbound, ChainOutbound} {
		if i > 0 {
			b.WriteByte('\n')
		}
		// As nft lists it: dstnat is a name of -100 in prerouting only.
		prio := "dstnat"
		if chain == ChainOutbound {
			prio = "-100"
		}
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype nat hook %s priority %s; policy accept;\n", chain, chain, prio)
		for _, r := range rules {
			if r.Chain == chain {
				fmt.Fprintf(&b, "\t\t%s\n", r)
			}
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// Apply replaces the table of capture in c's network namespace with the
// rules of s, in one transaction: either all of them are in place after
// it, or the old table is untouched.
func Apply(c *nftables.Conn, s Spec) error {
	if err := s.Check(); err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}
	// Adding before deleting makes the delete valid whether or not the
	// table existed; all three happen in the one batch.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	chains := map[string]*nftables.Chain{
		ChainInbound: c.AddChain(&nftables.Chain{
			Name: ChainInbound, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
		}),
		ChainOutbound: c.AddChain(&nftables.Chain{
			Name: ChainOutbound, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
		}),
	}
	for _, r := range Rules(s) {
		c.AddRule(&nftables.Rule{Table: t, Chain: chains[r.Chain], Exprs: r.exprs()})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("capture: program nftables table inet %s: %w", Table, err)
	}
	return nil
}

// Remove deletes capture's table, if there is one.
func Remove(c *nftables.Conn) error {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("capture: delete nftables table inet %s: %w", Table, err)
	}
	return nil
}

// The matches.

func tcp() Match {
	return Match{Text: "meta l4proto tcp", Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}}
}

// dport matches TCP to port p (the protocol match included, as nft
// writes "tcp dport" for both).
func dport(p uint16) Match {
	return Match{Text: fmt.Sprintf("tcp dport %d", p), Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
	}}
}

func skuid(uid uint32) Match {
	return Match{Text: fmt.Sprintf("meta skuid %d", uid), Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(uid)},
	}}
}

// daddr matches a destination prefix, IPv4 or IPv6 (the inet family sees
// both, so the family is matched first).
func daddr(p netip.Prefix) Match {
	family, offset, text := byte(unix.NFPROTO_IPV4), uint32(16), "ip daddr "
	if p.Addr().Is6() {
		family, offset, text = unix.NFPROTO_IPV6, 24, "ip6 daddr "
	}
	addr := p.Addr().AsSlice()
	mask := make([]byte, len(addr))
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	if p.Bits() == p.Addr().BitLen() {
		text += p.Addr().String()
	} else {
		text += p.String()
	}
	return Match{Text: text, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(addr))},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(addr)), Mask: mask, Xor: make([]byte, len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
	}}
}
