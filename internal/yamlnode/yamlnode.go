// Package yamlnode reads yaml.v3 nodes strictly into typed values: mappings
// with known fields only, each once; scalars of the wanted type; lists and
// free-form mappings of at most a given length (Bound); and a bound on how
// far aliases may expand a document. It reports every problem it finds as a
// Problem, which Errors turns into the one error format of Horizon's input
// files, "file:line:col: path: message" (Error). ReadFile and
// Parser.Document bound the size of a file before it is parsed.
//
// What yaml.v3 guards itself: nesting deeper than 10,000 levels is a syntax
// error ("exceeded max depth of 10000"), and its excessive-aliasing check
// applies only when it decodes into Go values. Decoded into yaml.Node, as
// here, an alias stays one node pointing at its anchor, so the tree is as
// large as the text (and about 100 times its size in memory, for the
// smallest nodes); expanding aliases is this package's walk, and the
// Reader's budget (Root) bounds it.
//
// discovery/file (the ClusterSet file) and discovery/policyfile (the policy file)
// read their formats with it.
package yamlnode

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a document. Where names the object it is
// in, as the caller named it (`cluster "east-1"`, `services[demo/echo]`);
// Field the field of that object whose value is at fault, "" for the object
// itself. Key is the key node at fault (a field that is unknown or given
// twice, a key of a free-form mapping given twice), nil otherwise.
type Problem struct {
	Line, Col int
	Where     string
	Field     string
	Key       *yaml.Node
	Msg       string
}

// Reader walks the nodes of one document, reporting each problem to Report
// as it is found. Set Report before use.
type Reader struct {
	Report func(Problem)
	// ListKnown adds the known field names to unknown-field messages.
	ListKnown bool

	// visits counts the nodes walked, budget bounds them: aliases let a small
	// document expand into a huge one. maxBudget, if not 0, caps the budget.
	visits, budget, maxBudget int
	overBudget                bool
}

// Root sets the budget of nodes the walk may visit from the size of doc, a
// yaml.DocumentNode, and returns its resolved root node. The budget is ten
// times doc's nodes, plus 10,000; a Parser caps the first term at half its
// size bound in bytes, so that nodes the walk never visits (an unknown
// field's) cannot raise it past what the largest file allows. Without
// aliases a walk visits each node once at most, and a node the formats
// read takes two bytes or more, so only aliases reach the budget.
func (r *Reader) Root(doc *yaml.Node) *yaml.Node {
	nodes := 10 * count(doc)
	if r.maxBudget > 0 {
		nodes = min(nodes, r.maxBudget)
	}
	r.budget = nodes + 10_000
	return r.Resolve(doc.Content[0])
}

func count(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += count(k)
	}
	return c
}

func (r *Reader) report(n *yaml.Node, where, field string, key *yaml.Node, format string, args ...any) {
	if r.overBudget {
		return // the walk stopped half-way: what it would report now is noise
	}
	r.Report(Problem{Line: n.Line, Col: n.Column, Where: where, Field: field, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Errorf reports a problem at n, in the object named where.
func (r *Reader) Errorf(n *yaml.Node, where, format string, args ...any) {
	r.report(n, where, "", nil, format, args...)
}

// FieldErrorf reports a problem at n, the value of field of the object named
// where.
func (r *Reader) FieldErrorf(n *yaml.Node, where, field, format string, args ...any) {
	r.report(n, where, field, nil, format, args...)
}

// Resolve follows an alias to the node it names and counts the visit.
func (r *Reader) Resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	r.visits++
	return n
}

// Exhausted reports whether the walk has visited too many nodes; it reports
// that once, at n, and nothing after it.
func (r *Reader) Exhausted(n *yaml.Node) bool {
	if r.visits < r.budget {
		return false
	}
	if !r.overBudget {
		r.Errorf(n, "", "YAML aliases expand the document to more than %d nodes", r.budget)
		r.overBudget = true
	}
	return true
}

// ScalarString returns the value of a string scalar, reporting any other node
// as the value of field of the object named where.
func (r *Reader) ScalarString(n *yaml.Node, where, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		r.FieldErrorf(n, where, field, "want a string, got %s", Describe(n))
		return "", false
	}
	return n.Value, true
}

// Object is a mapping of known fields, and where it is for messages.
type Object struct {
	r      *Reader
	where  string
	node   *yaml.Node
	fields map[string]*yaml.Node // resolved values, null ones included
	keys   map[string]*yaml.Node
}

// Object checks that n is a mapping whose keys are known field names, each
// once, and reports every one that is not; it returns nil when n is not a
// mapping.
func (r *Reader) Object(n *yaml.Node, where string, known ...string) *Object {
	if n.Kind != yaml.MappingNode {
		r.Errorf(n, where, "want a mapping, got %s", Describe(n))
		return nil
	}
	o := &Object{r: r, where: where, node: n, fields: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if r.Exhausted(n) {
			break
		}
		k, v := r.Resolve(n.Content[i]), r.Resolve(n.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode:
			r.Errorf(k, where, "want a field name, got %s", Describe(k))
		case o.keys[k.Value] != nil:
			r.report(k, where, "", k, "field %q given twice (first at line %d)", k.Value, o.keys[k.Value].Line)
		case !slices.Contains(known, k.Value):
			if r.ListKnown {
				r.report(k, where, "", k, "unknown field %q (want one of %s)", k.Value, strings.Join(known, ", "))
			} else {
				r.report(k, where, "", k, "unknown field %q", k.Value)
			}
		default:
			o.keys[k.Value] = k
			o.fields[k.Value] = v
		}
	}
	return o
}

// Where names the object, as given to Reader.Object.
func (o *Object) Where() string { return o.where }

// Node returns the mapping node of the object.
func (o *Object) Node() *yaml.Node { return o.node }

// Get returns the resolved value of a field, null included; nil when absent.
func (o *Object) Get(key string) *yaml.Node { return o.fields[key] }

// Key returns the key node of a field; nil when absent.
func (o *Object) Key(key string) *yaml.Node { return o.keys[key] }

// Set returns the value of a field that is present and not null.
func (o *Object) Set(key string) (*yaml.Node, bool) {
	n := o.fields[key]
	if n == nil || IsNull(n) {
		return nil, false
	}
	return n, true
}

// At returns where a field's problems are reported: its value, or the
// mapping when it is absent.
func (o *Object) At(key string) *yaml.Node {
	if n := o.fields[key]; n != nil {
		return n
	}
	return o.node
}

// Errorf reports a problem with a field.
func (o *Object) Errorf(key, format string, args ...any) {
	o.r.FieldErrorf(o.At(key), o.where, key, format, args...)
}

// Missing reports a required field that is absent or null.
func (o *Object) Missing(key string) {
	o.r.Errorf(o.node, o.where, "missing required field %q", key)
}

// Str returns a string field; "" when absent, null or not a string. A
// required field must be given and not be empty.
func (o *Object) Str(key string, required bool) string {
	n, ok := o.Set(key)
	if !ok {
		if required {
			o.Missing(key)
		}
		return ""
	}
	s, ok := o.r.ScalarString(n, o.where, key)
	if ok && s == "" && required {
		o.Errorf(key, "must not be empty")
	}
	return s
}

// Bool returns a boolean field, or def when absent, null or not a boolean.
func (o *Object) Bool(key string, def bool) bool {
	n, ok := o.Set(key)
	if !ok {
		return def
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		o.Errorf(key, "want true or false, got %s", Describe(n))
		return def
	}
	return b
}

// Bound is the most items a list, or entries a free-form mapping, may
// hold, and what they are called in the message when there are more:
// "20000 keys, at most 16".
type Bound struct {
	Max  int
	What string // plural: "clusters", "keys"
}

// over reports, at the list or mapping n of field key, that it holds more
// than b allows.
func (o *Object) over(key string, n int, b Bound) bool {
	if n <= b.Max {
		return false
	}
	o.Errorf(key, "%d %s, at most %d", n, b.What, b.Max)
	return true
}

// List returns the resolved items of a list field; nil when absent, null,
// not a list or longer than b (reported, and none of its items read). A
// caller that must tell an empty list from a rejected one looks at the
// field's node.
func (o *Object) List(key string, b Bound) []*yaml.Node {
	n, ok := o.Set(key)
	if !ok {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		o.Errorf(key, "want a list, got %s", Describe(n))
		return nil
	}
	if o.over(key, len(n.Content), b) {
		return nil
	}
	items := make([]*yaml.Node, 0, len(n.Content))
	for _, item := range n.Content {
		if o.r.Exhausted(n) {
			break
		}
		items = append(items, o.r.Resolve(item))
	}
	return items
}

// Entries calls each with the key node, key and resolved value of every entry
// of a free-form mapping field (labels, weights by name), each key once; never
// when the field is absent or null, nor when it has more entries than b
// (reported).
func (o *Object) Entries(key string, b Bound, each func(k *yaml.Node, name string, v *yaml.Node)) {
	n, ok := o.Set(key)
	if !ok {
		return
	}
	if n.Kind != yaml.MappingNode {
		o.Errorf(key, "want a mapping, got %s", Describe(n))
		return
	}
	if o.over(key, len(n.Content)/2, b) {
		return
	}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if o.r.Exhausted(n) {
			return
		}
		k, v := o.r.Resolve(n.Content[i]), o.r.Resolve(n.Content[i+1])
		name, ok := o.r.ScalarString(k, o.where, key)
		switch {
		case !ok:
		case lines[name] != 0:
			o.r.report(k, o.where, key, k, "%q given twice (first at line %d)", name, lines[name])
		default:
			lines[name] = k.Line
			each(k, name, v)
		}
	}
}

// IsNull reports whether a node is null, written or left empty.
func IsNull(n *yaml.Node) bool { return n.ShortTag() == "!!null" }

// Describe names what a node holds, for "want X, got Y" messages.
func Describe(n *yaml.Node) string {
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

// Child returns the resolved value of the first field named key of a mapping;
// nil when n is not a mapping or has no such field. It neither checks nor
// counts: it is for naming an object before it is read.
func Child(n *yaml.Node, key string) *yaml.Node {
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

// Peek returns the value of a field of a mapping when it is a scalar and not
// null, to name the object in messages before it is checked; "" otherwise.
func Peek(n *yaml.Node, key string) string {
	if v := Child(n, key); v != nil && v.Kind == yaml.ScalarNode && !IsNull(v) {
		return v.Value
	}
	return ""
}

var (
	yamlLine      = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// SyntaxError turns an error of yaml.v3's decoder on data into the line it
// is at and a message ("malformed YAML: ..."). yaml omits the line for
// problems on the first line and for bad characters; the latter are found
// again here to report their line.
func SyntaxError(data []byte, err error) (line int, msg string) {
	msg = err.Error()
	line = 1
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
	return line, "malformed YAML: " + msg
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
