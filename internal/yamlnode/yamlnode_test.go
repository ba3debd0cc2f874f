package yamlnode

import (
	"errors"
	"fmt"
	"os"
	"slices"
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
		{"list resolves aliases", func(o *Object) any { return values(o.List("list")) }, "a b b", nil},
		{"list absent", func(o *Object) any { return values(o.List("absent")) }, "", nil},
		{"list not a list", func(o *Object) any { return values(o.List("s")) }, "",
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
	o.Entries(key, func(_ *yaml.Node, name string, v *yaml.Node) {
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
