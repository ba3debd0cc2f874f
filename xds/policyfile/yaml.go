// This file reads YAML nodes into typed values, reporting every problem at its
// line, column and path; parse.go holds the format itself. It follows
// discovery/file's reader (same alias budget, same messages), adding the
// column and the path of the value at fault.

package policyfile

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
	file     string
	errs     []*Error
	warnings []*Error
	// visits counts the nodes walked, budget bounds them: aliases let a small
	// document expand into a huge one.
	visits, budget int
	overBudget     bool
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	if p.overBudget {
		return // the walk stopped half-way: what it would report now is noise
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) warnf(n *yaml.Node, path, format string, args ...any) {
	p.warnings = append(p.warnings, &Error{File: p.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// sortErrors sorts by position (then in the order found) and drops repeats:
// a YAML alias used twice, or a contradiction inherited by several rules.
func sortErrors(errs []*Error) []*Error {
	slices.SortStableFunc(errs, func(a, b *Error) int { return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col)) })
	seen := map[Error]bool{}
	out := errs[:0]
	for _, e := range errs {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	return out
}

func (p *parser) err() error {
	var errs []error
	for _, e := range sortErrors(p.errs) {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

var (
	yamlLine      = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// yamlError turns an error of the YAML parser into an Error at yaml's own line
// (yaml gives no column). yaml omits the line for problems on the first line
// and for bad characters; the latter are found again here to report their line.
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
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Col: 1, Msg: "malformed YAML: " + msg})
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

func isNull(n *yaml.Node) bool { return n.ShortTag() == "!!null" }

// join extends a path with a field name.
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// object is a YAML mapping of the format: its fields and their key nodes.
type object struct {
	p      *parser
	path   string
	node   *yaml.Node
	fields map[string]*yaml.Node // resolved values, null ones included
	keys   map[string]*yaml.Node
}

// object checks that n is a mapping whose keys are known field names, each
// once, and reports every one that is not.
func (p *parser) object(n *yaml.Node, path string, known ...string) *object {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "want a mapping, got %s", describe(n))
		return nil
	}
	o := &object{p: p, path: path, node: n, fields: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if p.exhausted(n) {
			break
		}
		k, v := p.resolve(n.Content[i]), p.resolve(n.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k, path, "want a field name, got %s", describe(k))
		case o.keys[k.Value] != nil:
			p.errorf(k, join(path, k.Value), "field %q given twice (first at line %d)", k.Value, o.keys[k.Value].Line)
		case !slices.Contains(known, k.Value):
			p.errorf(k, join(path, k.Value), "unknown field %q (want one of %s)", k.Value, strings.Join(known, ", "))
		default:
			o.keys[k.Value] = k
			o.fields[k.Value] = v
		}
	}
	return o
}

// set returns the value of a field that is present and not null.
func (o *object) set(key string) (*yaml.Node, bool) {
	n := o.fields[key]
	if n == nil || isNull(n) {
		return nil, false
	}
	return n, true
}

// at returns where a field's problems are reported: its value, or the
// mapping when it is absent.
func (o *object) at(key string) *yaml.Node {
	if n := o.fields[key]; n != nil {
		return n
	}
	return o.node
}

func (o *object) errorf(key, format string, args ...any) {
	o.p.errorf(o.at(key), join(o.path, key), format, args...)
}

// str returns a string field; "" when absent, null or not a string.
func (o *object) str(key string) string {
	n, ok := o.set(key)
	if !ok {
		return ""
	}
	s, _ := o.p.scalarString(n, join(o.path, key))
	return s
}

func (p *parser) scalarString(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n, path, "want a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// boolean returns a boolean field, or def when absent or null.
func (o *object) boolean(key string, def bool) bool {
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

// integer reads an integer in [lo, hi].
func (p *parser) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	var i int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
		p.errorf(n, path, "want an integer, got %s", describe(n))
		return 0, false
	}
	if i < lo || i > hi {
		p.errorf(n, path, "%d is out of range %d-%d", i, lo, hi)
		return 0, false
	}
	return i, true
}

// uint returns an integer field in [lo, hi] and whether it was given and valid.
func (o *object) uint(key string, lo, hi int64) (uint32, bool) {
	n, ok := o.set(key)
	if !ok {
		return 0, false
	}
	i, ok := o.p.integer(n, join(o.path, key), lo, hi)
	return uint32(i), ok
}

// maxDuration bounds every duration of the format: a day is more than any
// timeout or ejection time should be, and keeps arithmetic far from overflow.
const maxDuration = 24 * time.Hour

// duration returns a positive duration field written as Go writes them
// ("250ms", "5s", "1m30s"), and whether it was given and valid.
func (o *object) duration(key string) (time.Duration, bool) {
	n, ok := o.set(key)
	if !ok {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		o.errorf(key, "want a duration like 5s or 250ms, got %s", describe(n))
		return 0, false
	}
	d, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		o.errorf(key, "%q is not a duration (like 5s, 250ms or 1m30s)", n.Value)
	case d <= 0:
		o.errorf(key, "%s: want a positive duration", n.Value)
	case d > maxDuration:
		o.errorf(key, "%s is longer than %s", n.Value, maxDuration)
	default:
		return d, true
	}
	return 0, false
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

// entries calls each with the key node, key and resolved value of every entry
// of a free-form mapping field (weights by name), each key once; never when
// the field is absent or null.
func (o *object) entries(key string, each func(k *yaml.Node, name string, v *yaml.Node)) {
	n, ok := o.set(key)
	if !ok {
		return
	}
	path := join(o.path, key)
	if n.Kind != yaml.MappingNode {
		o.p.errorf(n, path, "want a mapping, got %s", describe(n))
		return
	}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if o.p.exhausted(n) {
			return
		}
		k, v := o.p.resolve(n.Content[i]), o.p.resolve(n.Content[i+1])
		name, ok := o.p.scalarString(k, path)
		switch {
		case !ok:
		case lines[name] != 0:
			o.p.errorf(k, index(path, name), "%q given twice (first at line %d)", name, lines[name])
		default:
			lines[name] = k.Line
			each(k, name, v)
		}
	}
}

// index extends a path with a list index or map key: services[demo/echo],
// to[1], weights[east-1].
func index(path string, i any) string { return fmt.Sprintf("%s[%v]", path, i) }

// peek returns the string value of a field of a mapping, if it has one, to
// name the object in paths before it is checked.
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
			if v.Kind == yaml.ScalarNode && !isNull(v) {
				return v.Value
			}
			if v.Kind == yaml.MappingNode {
				return "" // a nested object; callers peek into it themselves
			}
		}
	}
	return ""
}

// child returns the resolved value of a field of a mapping, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v := n.Content[i+1]
			for v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}
