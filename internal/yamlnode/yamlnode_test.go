package yamlnode

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// read parses src and returns a Reader over it, its root, and the problems
// it reports, formatted as "line:col where|field|key: message".
func read(t *testing.T, src string) (*Reader, *yaml.Node, *[]string) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	got := &[]string{}
	r := &Reader{Report: func(p Problem) { *got = append(*got, format(p)) }}
	return r, r.Root(&doc), got
}

func format(p Problem) string {
	key := ""
	if p.Key != nil {
		key = p.Key.Value
	}
	return fmt.Sprintf("%d:%d %s|%s|%s: %s", p.Line, p.Col, p.Where, p.Field, key, p.Msg)
}

func TestObject(t *testing.T) {
	known := []string{"name", "port"}
	for _, tc := range []struct {
		name, src string
		listKnown bool
		want      []string
		fields    []string // fields that Get finds
		isNil     bool
	}{
		{name: "known fields", src: "name: a\nport: 1", fields: []string{"name", "port"}},
		{name: "no fields", src: "{}"},
		{name: "null field is present", src: "name:", fields: []string{"name"}},
		{name: "unknown field", src: "name: a\nprot: 1",
			want: []string{`2:1 obj||prot: unknown field "prot"`}, fields: []string{"name"}},
		{name: "unknown field listing the known", src: "prot: 1", listKnown: true,
			want: []string{`1:1 obj||prot: unknown field "prot" (want one of name, port)`}},
		{name: "field given twice keeps the first", src: "name: a\nport: 1\nname: b",
			want: []string{`3:1 obj||name: field "name" given twice (first at line 1)`}, fields: []string{"name", "port"}},
		{name: "key not a scalar", src: "? [a]\n: 1",
			want: []string{`1:3 obj||: want a field name, got a list`}},
		{name: "not a mapping", src: "[name]", isNil: true,
			want: []string{`1:1 obj||: want a mapping, got a list`}},
		{name: "scalar", src: "name", isNil: true,
			want: []string{`1:1 obj||: want a mapping, got string "name"`}},
		{name: "alias key and value", src: "x: &k name\ny: &v 7\n*k : *v", fields: []string{"name"},
			want: []string{`1:1 obj||x: unknown field "x"`, `2:1 obj||y: unknown field "y"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, root, got := read(t, tc.src)
			r.ListKnown = tc.listKnown
			o := r.Object(root, "obj", known...)
			if !slices.Equal(*got, tc.want) {
				t.Errorf("problems:\n got %q\nwant %q", *got, tc.want)
			}
			if (o == nil) != tc.isNil {
				t.Fatalf("Object = %v, want nil: %v", o, tc.isNil)
			}
			if o == nil {
				return
			}
			for _, f := range known {
				if found := o.Get(f) != nil; found != slices.Contains(tc.fields, f) {
					t.Errorf("Get(%q) found: %v", f, found)
				}
				if (o.Get(f) != nil) != (o.Key(f) != nil) {
					t.Errorf("Get(%q) and Key(%q) disagree", f, f)
				}
			}
		})
	}
}

func TestObjectFields(t *testing.T) {
	const src = `
s: text
empty: ""
n: 7
t: true
null:
list: [a, &x b, *x]
map: {a: 1, b: 2, a: 3}
keys: {[k]: 1}
`
	for _, tc := range []struct {
		name string
		read func(o *Object) any
		want any
		errs []string
	}{
		{"string", func(o *Object) any { return o.Str("s", true) }, "text", nil},
		{"string absent", func(o *Object) any { return o.Str("absent", false) }, "", nil},
		{"string null", func(o *Object) any { return o.Str("null", false) }, "", nil},
		{"string required absent", func(o *Object) any { return o.Str("absent", true) }, "",
			[]string{`2:1 obj||: missing required field "absent"`}},
		{"string required null", func(o *Object) any { return o.Str("null", true) }, "",
			[]string{`2:1 obj||: missing required field "null"`}},
		{"string required empty", func(o *Object) any { return o.Str("empty", true) }, "",
			[]string{`3:8 obj|empty|: must not be empty`}},
		{"string not a string", func(o *Object) any { return o.Str("n", false) }, "",
			[]string{`4:4 obj|n|: want a string, got integer 7`}},
		{"bool", func(o *Object) any { return o.Bool("t", false) }, true, nil},
		{"bool default", func(o *Object) any { return o.Bool("null", true) }, true, nil},
		{"bool not a bool", func(o *Object) any { return o.Bool("s", true) }, true,
			[]string{`2:4 obj|s|: want true or false, got string "text"`}},
		{"list resolves aliases", func(o *Object) any { return values(o.List("list", ten)) }, "a b b", nil},
		{"list absent", func(o *Object) any { return values(o.List("absent", ten)) }, "", nil},
		{"list not a list", func(o *Object) any { return values(o.List("s", ten)) }, "",
			[]string{`2:4 obj|s|: want a list, got string "text"`}},
		{"entries each key once", func(o *Object) any { return entries(o, "map") }, "a=1 b=2",
			[]string{`8:19 obj|map|a: "a" given twice (first at line 8)`}},
		{"entries key not a string", func(o *Object) any { return entries(o, "keys") }, "",
			[]string{`9:8 obj|keys|: want a string, got a list`}},
		{"entries not a mapping", func(o *Object) any { return entries(o, "list") }, "",
			[]string{`7:7 obj|list|: want a mapping, got a list`}},
		{"errorf at an absent field names the object", func(o *Object) any { o.Errorf("absent", "bad"); return nil }, nil,
			[]string{`2:1 obj|absent|: bad`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, root, got := read(t, src)
			o := r.Object(root, "obj", "s", "empty", "n", "t", "null", "list", "map", "keys")
			*got = nil // the duplicate in map: is not what this case is about
			if v := tc.read(o); v != tc.want {
				t.Errorf("value = %#v, want %#v", v, tc.want)
			}
			if !slices.Equal(*got, tc.errs) {
				t.Errorf("problems:\n got %q\nwant %q", *got, tc.errs)
			}
		})
	}
}

// ten bounds the lists and mappings of the tests that are not about bounds.
var ten = Bound{Max: 10, What: "items"}

func values(ns []*yaml.Node) string {
	s := ""
	for i, n := range ns {
		if i > 0 {
			s += " "
		}
		s += n.Value
	}
	return s
}

func entries(o *Object, key string) string {
	s := ""
	o.Entries(key, ten, func(_ *yaml.Node, name string, v *yaml.Node) {
		if s != "" {
			s += " "
		}
		s += name + "=" + v.Value
	})
	return s
}

// TestAliasBomb checks that aliases cannot make a walk visit more than its
// budget of nodes, and that the walk reports that once and nothing after it.
func TestAliasBomb(t *testing.T) {
	data, err := os.ReadFile("testdata/alias-bomb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var got []Problem
	r := &Reader{Report: func(p Problem) { got = append(got, p) }}
	root := r.Root(&doc)
	walked := 0
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		walked++
		if n.Kind != yaml.MappingNode {
			return
		}
		o := r.Object(n, "", "l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "v")
		for _, k := range []string{"l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "v"} {
			if v := o.Get(k); v != nil {
				walk(v)
			}
		}
	}
	walk(root)
	budget := 10*count(&doc) + 10_000
	if walked > 2*budget {
		t.Errorf("walked %d nodes, budget %d", walked, budget)
	}
	want := fmt.Sprintf("YAML aliases expand the document to more than %d nodes", budget)
	if len(got) != 1 || got[0].Msg != want {
		t.Fatalf("problems = %+v, want one: %s", got, want)
	}
	if !r.Exhausted(root) {
		t.Error("Exhausted = false after the budget is spent")
	}
	r.Errorf(root, "", "after the budget")
	if len(got) != 1 {
		t.Errorf("problems after the budget was spent: %+v", got[1:])
	}
}

func TestSmallDocumentWithinBudget(t *testing.T) {
	r, root, got := read(t, "a: &a [1, 2, 3]\nb: *a\nc: *a")
	if r.Exhausted(root) {
		t.Error("Exhausted = true for a small document")
	}
	if len(*got) != 0 {
		t.Errorf("problems: %q", *got)
	}
}

func TestDescribe(t *testing.T) {
	for src, want := range map[string]string{
		"{a: 1}":        "a mapping",
		"[1]":           "a list",
		"abc":           `string "abc"`,
		`"7"`:           `string "7"`,
		"7":             "integer 7",
		"1.5":           "number 1.5",
		"true":          "boolean true",
		"2026-01-02":    "timestamp 2026-01-02",
		"~":             "null",
		"!!binary aGk=": `!!binary "aGk="`,
		"!custom 1":     `!custom "1"`,
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := Describe(doc.Content[0]); got != want {
			t.Errorf("Describe(%s) = %s, want %s", src, got, want)
		}
	}
}

func TestPeekAndChild(t *testing.T) {
	for _, tc := range []struct {
		src, key   string
		peek       string
		childFound bool
	}{
		{"name: a", "name", "a", true},
		{"name: 7", "name", "7", true},
		{"x: &n a\nname: *n", "name", "a", true},
		{"name:", "name", "", true},
		{"name: {a: 1}", "name", "", true},
		{"name: a\nname: b", "name", "a", true},
		{"other: a", "name", "", false},
		{"[name]", "name", "", false},
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(tc.src), &doc); err != nil {
			t.Fatal(err)
		}
		n := doc.Content[0]
		if got := Peek(n, tc.key); got != tc.peek {
			t.Errorf("Peek(%q, %s) = %q, want %q", tc.src, tc.key, got, tc.peek)
		}
		if c := Child(n, tc.key); (c != nil) != tc.childFound || c != nil && c.Kind == yaml.AliasNode {
			t.Errorf("Child(%q, %s) = %v, want found: %v, resolved", tc.src, tc.key, c, tc.childFound)
		}
	}
}

func TestSyntaxError(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		msg       string
	}{
		{"line given", "a: 1\nb: c: d\n", 2, "malformed YAML: mapping values are not allowed in this context"},
		{"first line", "{a: 1\n", 1, "malformed YAML: did not find expected ',' or '}'"},
		{"unknown anchor", "a: 1\nb: 2\nc: *nowhere\n", 3, "malformed YAML: unknown anchor 'nowhere' referenced"},
		{"control character", "a: 1\nb: 2\nc: \x01\n", 3, "malformed YAML: control characters are not allowed"},
		{"invalid UTF-8", "a: 1\nb: \xff\n", 2, "malformed YAML: invalid leading UTF-8 octet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var doc yaml.Node
			err := yaml.Unmarshal([]byte(tc.src), &doc)
			if err == nil {
				t.Fatal("yaml accepted it")
			}
			line, msg := SyntaxError([]byte(tc.src), err)
			if line != tc.line || msg != tc.msg {
				t.Errorf("SyntaxError = %d, %q; want %d, %q (yaml said %q)", line, msg, tc.line, tc.msg, err)
			}
		})
	}
	_, msg := SyntaxError(nil, errors.New("yaml: something"))
	if msg != "malformed YAML: something" {
		t.Errorf("msg = %q", msg)
	}
}

// TestBound checks that a list or mapping longer than its bound is reported
// at the list, with its length, and none of its items read.
func TestBound(t *testing.T) {
	const src = "list: [a, b, c]\nmap: {a: 1, b: 2, c: 3}\n"
	for _, tc := range []struct {
		name string
		max  int
		want string
		errs []string
	}{
		{"at the bound", 3, "a b c|a=1 b=2 c=3", nil},
		{"over the bound", 2, "|", []string{`1:7 obj|list|: 3 items, at most 2`, `2:6 obj|map|: 3 items, at most 2`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, root, got := read(t, src)
			o := r.Object(root, "obj", "list", "map")
			b := Bound{Max: tc.max, What: "items"}
			l := values(o.List("list", b))
			var m []string
			o.Entries("map", b, func(_ *yaml.Node, name string, v *yaml.Node) { m = append(m, name+"="+v.Value) })
			if v := l + "|" + strings.Join(m, " "); v != tc.want {
				t.Errorf("read %q, want %q", v, tc.want)
			}
			if !slices.Equal(*got, tc.errs) {
				t.Errorf("problems:\n got %q\nwant %q", *got, tc.errs)
			}
		})
	}
}

// endless is a reader of endless input that counts what it gives.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '#'
	}
	e.n += len(p)
	return len(p), nil
}

// TestReadAtMost checks that the size bound reads no more than max+1 bytes
// of an input of any size.
func TestReadAtMost(t *testing.T) {
	r := &endless{}
	data, err := readAtMost(r, "f.yaml", "test", 1000)
	if data != nil || err == nil || err.Error() != "f.yaml:1:1: size > 1000 bytes: a test file holds at most 1000 bytes" {
		t.Errorf("readAtMost = %d bytes, %v", len(data), err)
	}
	if r.n > 1001 {
		t.Errorf("read %d bytes for a bound of 1000", r.n)
	}
	var e *Error
	if !errors.As(err, &e) || e.File != "f.yaml" || e.Line != 1 {
		t.Errorf("errors.As(*Error) = %+v", e)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		size int
		err  string
	}{
		{1 << 20, ""},
		{1<<20 + 1, "size > 1048576 bytes: a test file holds at most 1 MiB"},
	} {
		path := filepath.Join(dir, fmt.Sprint(tc.size))
		if err := os.WriteFile(path, bytes.Repeat([]byte{'#'}, tc.size), 0o644); err != nil {
			t.Fatal(err)
		}
		data, err := ReadFile(path, "test", 1<<20)
		switch {
		case tc.err == "" && (err != nil || len(data) != tc.size):
			t.Errorf("%d bytes: ReadFile = %d bytes, %v", tc.size, len(data), err)
		case tc.err != "" && (err == nil || err.Error() != path+":1:1: "+tc.err):
			t.Errorf("%d bytes: ReadFile = %d bytes, %v; want %s", tc.size, len(data), err, tc.err)
		}
	}
	if _, err := ReadFile(filepath.Join(dir, "missing"), "test", 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(missing) = %v, want fs.ErrNotExist", err)
	}
}

// TestDocumentSize checks that Document rejects data larger than the
// parser's bound before parsing it (the data is not even YAML).
func TestDocumentSize(t *testing.T) {
	for _, tc := range []struct {
		data string
		want string
	}{
		{"a: [1]\n", ""},
		{"a: [1]\n\x00", "f.yaml:1:1: size > 7 bytes: a thing file holds at most 7 bytes"},
	} {
		var p Parser
		p.Init("f.yaml", false, 7)
		root := p.Document([]byte(tc.data), "thing", "a thing")
		got := ""
		if err := p.Err(); err != nil {
			got = err.Error()
		}
		if got != tc.want || (root == nil) != (tc.want != "") {
			t.Errorf("Document(%q): root %v, error %q; want %q", tc.data, root, got, tc.want)
		}
	}
}

// TestErrorsInsideInput checks that a value yaml.v3 places past the end of
// the input (the implicit null of a lone "?" key, or of a last "key:") is
// reported at the input's end: an editor jumping to "f.yaml:2:1" in a
// one-line file finds nothing. Found by FuzzDocument.
func TestErrorsInsideInput(t *testing.T) {
	for _, tc := range []struct {
		data string
		want string
	}{
		{"?", "f.yaml:1:2: want a string, got null"},
		{"a: 1\n?", "f.yaml:1:4: want a string, got integer 1\nf.yaml:2:2: want a string, got null"},
		{"a: 1\r\n?", "f.yaml:1:4: want a string, got integer 1\nf.yaml:2:2: want a string, got null"},
		{"a: 1\u2028?", "f.yaml:1:4: want a string, got integer 1\nf.yaml:2:2: want a string, got null"},
		{"é: x\nb:", "f.yaml:2:3: want a string, got null"},
	} {
		var p Parser
		p.Init("f.yaml", false, 1<<10)
		root := p.Document([]byte(tc.data), "thing", "a thing")
		if root == nil || root.Kind != yaml.MappingNode {
			t.Fatalf("Document(%q): root %v, error %v", tc.data, root, p.Err())
		}
		for i := 1; i < len(root.Content); i += 2 {
			p.ScalarString(root.Content[i], "", "")
		}
		got := ""
		if err := p.Err(); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("Document(%q): error %q, want %q", tc.data, got, tc.want)
		}
	}
}

// TestDeepNesting locks in yaml.v3's own bound on nesting, which this
// package relies on (its walk recurses).
func TestDeepNesting(t *testing.T) {
	for _, src := range []string{
		strings.Repeat("[", 10_001) + strings.Repeat("]", 10_001),
		strings.Repeat("{a: ", 10_001) + "1" + strings.Repeat("}", 10_001),
	} {
		var p Parser
		p.Init("f.yaml", false, 1<<20)
		if root := p.Document([]byte(src), "thing", "a thing"); root != nil {
			t.Fatalf("nesting of 10,001 levels accepted")
		}
		if err := p.Err(); err == nil || !strings.Contains(err.Error(), "exceeded max depth of 10000") {
			t.Errorf("error = %v, want the depth exceeded", err)
		}
	}
}

// TestMaxErrors checks that Err lists at most MaxErrors errors and says how
// many more there are, at the first one left out.
func TestMaxErrors(t *testing.T) {
	c := Errors{File: "f.yaml"}
	n := &yaml.Node{}
	for i := range MaxErrors + 50 {
		n.Line = i + 1
		c.Add(n, "x", "error %d", i)
	}
	lines := strings.Split(c.Err().Error(), "\n")
	if len(lines) != MaxErrors+1 {
		t.Fatalf("%d lines, want %d", len(lines), MaxErrors+1)
	}
	if want := fmt.Sprintf("f.yaml:%d:0: 50 more errors from here on, not listed", MaxErrors+1); lines[MaxErrors] != want {
		t.Errorf("last line %q, want %q", lines[MaxErrors], want)
	}
	c.List = c.List[:MaxErrors]
	if lines := strings.Split(c.Err().Error(), "\n"); len(lines) != MaxErrors || strings.Contains(lines[MaxErrors-1], "more") {
		t.Errorf("%d errors: %d lines, last %q", MaxErrors, len(lines), lines[len(lines)-1])
	}
}

// TestParserBudget checks that a Parser caps the walk's budget at half its
// size bound plus 10,000 (11,000 here): nodes the walk never visits (x) do
// not raise it. A plain Reader's budget, ten times the nodes, lets the same
// walk through.
func TestParserBudget(t *testing.T) {
	rep := func(s string, n int) string { return strings.TrimSuffix(strings.Repeat(s+", ", n), ", ") }
	src := "x: [" + rep("0", 300) + "]\n" +
		"a: &a [" + rep("1", 10) + "]\nb: &b [" + rep("*a", 10) + "]\nc: &c [" + rep("*b", 10) + "]\nd: [" + rep("*c", 10) + "]\n"
	walk := func(r *Reader, root *yaml.Node) {
		var walk func(n *yaml.Node)
		walk = func(n *yaml.Node) {
			for _, c := range n.Content {
				if r.Exhausted(n) {
					return
				}
				walk(r.Resolve(c))
			}
		}
		o := r.Object(root, "", "x", "a", "b", "c", "d")
		for _, k := range []string{"a", "b", "c", "d"} {
			walk(o.Get(k))
		}
	}

	var p Parser
	p.Init("f.yaml", false, 2000)
	if len(src) > 2000 {
		t.Fatalf("src is %d bytes", len(src))
	}
	walk(&p.Reader, p.Document([]byte(src), "thing", "a thing"))
	want := "YAML aliases expand the document to more than 11000 nodes"
	if err := p.Err(); err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("Parser: %v, want %s", err, want)
	}

	r, root, got := read(t, src)
	walk(r, root)
	if len(*got) != 0 {
		t.Errorf("Reader: %q, want no problem", *got)
	}
}

// TestPathQuotesUnprintable: a name with a newline or another unprintable
// character is quoted in a path, so that an error stays on one line; other
// names are shown as they are.
func TestPathQuotesUnprintable(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Index("clusters", "east-1"), "clusters[east-1]"},
		{Index("to", 1), "to[1]"},
		{Index("clusters", "0\n00"), `clusters["0\n00"]`},
		{Join("clusters[a]", "gate\tways"), `clusters[a]."gate\tways"`},
		{Join("", "services"), "services"},
		{Index("labels", "zoné"), "labels[zoné]"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}
