// This file reads YAML nodes into typed values, reporting every problem at its
// line; parse.go holds the format itself.

package file

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// parser collects the problems of one file while it walks its nodes.
type parser struct {
	file string
	errs []*Error
	// visits counts the nodes walked, budget bounds them: aliases let a small
	// document expand into a huge one.
	visits, budget int
	overBudget     bool
}

func (p *parser) errorf(n *yaml.Node, where, format string, args ...any) {
	if p.overBudget {
		return // the walk stopped half-way: what it would report now is noise
	}
	msg := fmt.Sprintf(format, args...)
	if where != "" {
		msg = where + ": " + msg
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Msg: msg})
}

// err returns the errors found, sorted by line (then in the order found),
// without the repeats that a YAML alias used twice would cause.
func (p *parser) err() error {
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	seen := map[Error]bool{}
	var errs []error
	for _, e := range p.errs {
		if !seen[*e] {
			seen[*e] = true
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

var (
	yamlLine      = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// yamlError turns an error of the YAML parser into an Error at yaml's own line.
// yaml omits the line for problems on the first line and for bad characters;
// the latter are found again here to report their line.
func (p *parser) yamlError(data []byte, err error) {
	msg := err.Error()
	line := 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
		if m := unknownAnchor.FindStringSubmatch(err.Error()); m != nil {
			if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
				line = 1 + bytes.Count(data[:i], []byte("\n"))
			}
		} else if i := badCharacter(data); i >= 0 {
			line = 1 + bytes.Count(data[:i], []byte("\n"))
		}
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: "malformed YAML: " + msg})
}

// badCharacter returns the offset of the first byte that is not valid UTF-8 or
// is a control character YAML does not allow, or -1.
func badCharacter(data []byte) int {
	if bytes.HasPrefix(data, []byte{0xfe, 0xff}) || bytes.HasPrefix(data, []byte{0xff, 0xfe}) {
		return -1 // UTF-16, which yaml decodes itself
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 || r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return i
		}
		i += size
	}
	return -1
}

func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

// resolve follows an alias to the node it names and counts the visit.
func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	p.visits++
	return n
}

// exhausted reports whether the walk has visited too many nodes; it reports
// that once.
func (p *parser) exhausted(n *yaml.Node) bool {
	if p.visits < p.budget {
		return false
	}
	if !p.overBudget {
		p.errorf(n, "", "YAML aliases expand the document to more than %d nodes", p.budget)
		p.overBudget = true
	}
	return true
}

// describe names what a node holds, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!str":
		return "string " + strconv.Quote(n.Value)
	case "!!int":
		return "integer " + n.Value
	case "!!float":
		return "number " + n.Value
	case "!!bool":
		return "boolean " + n.Value
	case "!!timestamp":
		return "timestamp " + n.Value
	case "!!null":
		return "null"
	}
	return n.ShortTag() + " " + strconv.Quote(n.Value)
}

// object is a YAML mapping of the format: its fields, and where it is for
// error messages (e.g. `cluster "east-1" service demo/echo`).
type object struct {
	p      *parser
	where  string
	node   *yaml.Node
	fields map[string]*yaml.Node // resolved values, null ones included
}

// object checks that n is a mapping whose keys are known field names, each
// once, and reports every one that is not.
func (p *parser) object(n *yaml.Node, where string, known ...string) *object {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, where, "want a mapping, got %s", describe(n))
		return nil
	}
	o := &object{p: p, where: where, node: n, fields: map[string]*yaml.Node{}}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if p.exhausted(n) {
			break
		}
		k, v := p.resolve(n.Content[i]), p.resolve(n.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k, where, "want a field name, got %s", describe(k))
		case lines[k.Value] != 0:
			p.errorf(k, where, "field %q given twice (first at line %d)", k.Value, lines[k.Value])
		case !slices.Contains(known, k.Value):
			p.errorf(k, where, "unknown field %q", k.Value)
		default:
			lines[k.Value] = k.Line
			o.fields[k.Value] = v
		}
	}
	return o
}

// get returns the value of a field, nil when absent.
func (o *object) get(key string) *yaml.Node { return o.fields[key] }

// set returns the value of a field that is present and not null.
func (o *object) set(key string) (*yaml.Node, bool) {
	n := o.fields[key]
	if n == nil || n.ShortTag() == "!!null" {
		return nil, false
	}
	return n, true
}

func (o *object) errorf(key, format string, args ...any) {
	n := o.fields[key]
	if n == nil {
		n = o.node
	}
	o.p.errorf(n, o.where, key+": "+format, args...)
}

func (o *object) missing(key string) { o.p.errorf(o.node, o.where, "missing required field %q", key) }

// string returns a string field; "" when absent or null.
func (o *object) string(key string, required bool) string {
	n, ok := o.set(key)
	if !ok {
		if required {
			o.missing(key)
		}
		return ""
	}
	s, ok := o.p.scalarString(n, key, o.where)
	if ok && s == "" && required {
		o.errorf(key, "must not be empty")
	}
	return s
}

func (p *parser) scalarString(n *yaml.Node, key, where string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n, where, "%swant a string, got %s", prefix(key), describe(n))
		return "", false
	}
	return n.Value, true
}

func prefix(key string) string {
	if key == "" {
		return ""
	}
	return key + ": "
}

// bool returns a boolean field, or def when absent or null.
func (o *object) bool(key string, def bool) bool {
	n, ok := o.set(key)
	if !ok {
		return def
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		o.errorf(key, "want true or false, got %s", describe(n))
		return def
	}
	return b
}

// port returns a port number field (1-65535), or 0 when absent, null or bad.
func (o *object) port(key string, required bool) uint32 {
	n, ok := o.set(key)
	if !ok {
		if required {
			o.missing(key)
		}
		return 0
	}
	port, ok := o.p.portNumber(n, key, o.where)
	if !ok {
		return 0
	}
	return port
}

func (p *parser) portNumber(n *yaml.Node, key, where string) (uint32, bool) {
	var i int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
		p.errorf(n, where, "%swant a port number, got %s", prefix(key), describe(n))
		return 0, false
	}
	if i < 1 || i > 65535 {
		p.errorf(n, where, "%s%d is out of range 1-65535", prefix(key), i)
		return 0, false
	}
	return uint32(i), true
}

// time returns an RFC 3339 timestamp field; the zero time when absent or null.
func (o *object) time(key string) time.Time {
	n, ok := o.set(key)
	if !ok {
		return time.Time{}
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!timestamp" && n.ShortTag() != "!!str" {
		o.errorf(key, "want an RFC 3339 timestamp, got %s", describe(n))
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		o.errorf(key, "%q is not an RFC 3339 timestamp (like 2026-01-02T03:04:05Z)", n.Value)
		return time.Time{}
	}
	return t
}

// list returns the resolved items of a list field; nil when absent or null.
func (o *object) list(key string) []*yaml.Node {
	n, ok := o.set(key)
	if !ok {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		o.errorf(key, "want a list, got %s", describe(n))
		return nil
	}
	items := make([]*yaml.Node, 0, len(n.Content))
	for _, item := range n.Content {
		if o.p.exhausted(n) {
			break
		}
		items = append(items, o.p.resolve(item))
	}
	return items
}

// entries calls each with the keys and resolved values of a free-form mapping
// field (labels, endpoint ports), each key once; never when absent or null.
func (o *object) entries(key string, each func(k string, v *yaml.Node)) {
	n, ok := o.set(key)
	if !ok {
		return
	}
	if n.Kind != yaml.MappingNode {
		o.errorf(key, "want a mapping, got %s", describe(n))
		return
	}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if o.p.exhausted(n) {
			return
		}
		k, v := o.p.resolve(n.Content[i]), o.p.resolve(n.Content[i+1])
		name, ok := o.p.scalarString(k, key, o.where)
		switch {
		case !ok:
		case lines[name] != 0:
			o.p.errorf(k, o.where, "%s: %q given twice (first at line %d)", key, name, lines[name])
		default:
			lines[name] = k.Line
			each(name, v)
		}
	}
}

// peek returns the string value of a field of a mapping, if it has one,
// to name the object in messages before it is checked.
func peek(n *yaml.Node, key string) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v := n.Content[i+1]
			for v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			if v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null" {
				return v.Value
			}
		}
	}
	return ""
}
