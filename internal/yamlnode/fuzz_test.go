package yamlnode

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var errorLine = regexp.MustCompile(`^fuzz\.yaml:(\d+):(\d+): \S`)

// FuzzDocument reads any input as one document of a small format (a
// Parser of at most 4 KiB) and walks every node of it through the Reader,
// aliases expanded, as the input formats do. Properties: no panic; the
// walk ends (aliases cannot expand it past the Parser's budget, itself
// bounded by the size limit); input over the limit is refused before it is
// parsed; every error line is "fuzz.yaml:line:col: ..." at a position
// inside the input, and there are at most MaxErrors of them plus the
// "more errors" line.
func FuzzDocument(f *testing.F) {
	const maxSize = 4 << 10
	seeds, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("../../discovery/file/testdata/*/*.yaml")
	for _, p := range append(seeds, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if len(data) <= maxSize {
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a, *a]\nname: x\n"))
	f.Add([]byte("a: &a {name: [1, 2], labels: {k: v}}\nb: [*a, *a, *a]\n---\nc: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Parser
		p.Init("fuzz.yaml", true, maxSize)
		root := p.Document(data, "thing", "a mapping")
		if len(data) > maxSize {
			if root != nil || len(p.List) != 1 {
				t.Fatalf("%d bytes over the %d limit: parsed, or %d errors", len(data), maxSize, len(p.List))
			}
			return
		}
		walked := 0
		var walk func(n *yaml.Node, where string)
		walk = func(n *yaml.Node, where string) {
			n = p.Resolve(n)
			if p.Exhausted(n) {
				return
			}
			walked++
			switch n.Kind {
			case yaml.MappingNode:
				o := p.Object(n, where, "name", "items", "labels", "enabled")
				if o == nil {
					return
				}
				o.Str("name", false)
				o.Bool("enabled", false)
				for i, item := range o.List("items", Bound{Max: 8, What: "items"}) {
					walk(item, Index(Join(where, "items"), i))
				}
				o.Entries("labels", Bound{Max: 8, What: "labels"}, func(_ *yaml.Node, name string, v *yaml.Node) {
					walk(v, Index(Join(where, "labels"), name))
				})
				for i := 1; i < len(n.Content); i += 2 {
					walk(n.Content[i], Join(where, n.Content[i-1].Value))
				}
			case yaml.SequenceNode:
				for i, c := range n.Content {
					walk(c, Index(where, i))
				}
			case yaml.ScalarNode:
				p.ScalarString(n, where, "")
			}
		}
		if root != nil {
			walk(root, "")
		}
		if p.budget > maxSize/2+10_000 || walked > p.budget {
			t.Fatalf("walked %d nodes, budget %d", walked, p.budget)
		}
		err := p.Err()
		if root == nil && err == nil {
			t.Fatal("no document and no error")
		}
		if err == nil {
			return
		}
		lines := yamlLines(data)
		n := 0
		for l := range strings.Lines(err.Error()) {
			n++
			m := errorLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("error line %q: want fuzz.yaml:<line>:<col>: <message>", l)
			}
			line, _ := strconv.Atoi(m[1])
			col, _ := strconv.Atoi(m[2])
			if line < 1 || line > lines || col < 1 {
				t.Fatalf("error line %q: position outside the input's %d lines", l, lines)
			}
		}
		if n > MaxErrors+1 {
			t.Fatalf("%d error lines, at most %d", n, MaxErrors+1)
		}
	})
}

// yamlLines is the number of lines of data as yaml.v3 counts them: "\r\n",
// "\r", "\n" and the Unicode breaks NEL, LS and PS each end one.
func yamlLines(data []byte) int {
	n := 1 + bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n"))
	for _, br := range []string{"\u0085", "\u2028", "\u2029"} {
		n += bytes.Count(data, []byte(br))
	}
	return n
}
