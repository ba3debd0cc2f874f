package yamlnode

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Error is one problem found in an input file, in the one format both of
// Horizon's YAML inputs (the ClusterSet file and the policy file) report:
//
//	file:line:col: path: message
//
// where path names the value at fault, like
// clusters[east-1].services[demo/echo].endpoints[10.0.0.1].address or
// services[demo/echo].locality.failover[us-east].to[1].
type Error struct {
	File string
	Line int
	Col  int
	Path string
	Msg  string
}

func (e *Error) Error() string {
	s := e.File + ":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Col) + ": "
	if e.Path != "" {
		s += e.Path + ": "
	}
	return s + e.Msg
}

// Join extends a path with a field name.
func Join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// Index extends a path with a list index or a key: clusters[east-1], to[1],
// weights[east-1].
func Index(path string, i any) string { return fmt.Sprintf("%s[%v]", path, i) }

// Errors collects the problems of one file: a Reader's Report, warnings, and
// the YAML parser's own errors. The zero value with File set is ready.
type Errors struct {
	File     string
	List     []*Error
	Warnings []*Error
}

// Collect turns a Reader's problem into an Error at the path of the value at
// fault: a field extends the path (defaults.retries), a key of a free-form
// mapping indexes it (weights[east-1]), an unknown or repeated field name
// extends it.
func (c *Errors) Collect(pr Problem) {
	path := pr.Where
	if pr.Field != "" {
		path = Join(path, pr.Field)
	}
	if pr.Key != nil {
		if pr.Field == "" {
			path = Join(path, pr.Key.Value)
		} else {
			path = Index(path, pr.Key.Value)
		}
	}
	c.List = append(c.List, &Error{File: c.File, Line: pr.Line, Col: pr.Col, Path: path, Msg: pr.Msg})
}

// Add records an error at n.
func (c *Errors) Add(n *yaml.Node, path, format string, args ...any) {
	c.List = append(c.List, &Error{File: c.File, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Warnf records a warning at n: something worth knowing that does not
// reject the file.
func (c *Errors) Warnf(n *yaml.Node, path, format string, args ...any) {
	c.Warnings = append(c.Warnings, &Error{File: c.File, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Syntax records an error of the YAML parser, at its line (it gives no
// column).
func (c *Errors) Syntax(data []byte, err error) {
	line, msg := SyntaxError(data, err)
	c.List = append(c.List, &Error{File: c.File, Line: line, Col: 1, Msg: msg})
}

// Err returns the errors found, sorted by position, joined with errors.Join
// (errors.As finds the first), or nil.
func (c *Errors) Err() error {
	var errs []error
	for _, e := range Sorted(c.List) {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// Sorted sorts errors by position (then in the order found) and drops
// repeats: a YAML alias used twice, or a contradiction inherited by several
// rules.
func Sorted(errs []*Error) []*Error {
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

// Parser is a Reader whose problems are collected as the Errors of one
// file: what the parser of each input format embeds. Init it in place.
type Parser struct {
	Reader
	Errors
}

// Init readies p for the named file; listKnown is Reader.ListKnown.
func (p *Parser) Init(file string, listKnown bool) {
	p.File, p.ListKnown = file, listKnown
	p.Report = p.Collect
}

// Document reads data as one YAML document holding one what (a ClusterSet,
// a policy) and returns its root, or nil after reporting why it cannot: an
// empty file or document ("empty file: want "+want), a syntax error, or a
// second document (an empty one after a trailing "---" is fine).
func (p *Parser) Document(data []byte, what, want string) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.List = append(p.List, &Error{File: p.File, Line: 1, Col: 1, Msg: "empty file: want " + want})
		} else {
			p.Syntax(data, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.Syntax(data, err)
		return nil
	case len(next.Content) == 1 && IsNull(next.Content[0]) && next.Content[0].Value == "":
		// An empty document after a trailing "---".
	default:
		p.Errorf(&next, "", "a second YAML document: the file holds one %s", what)
	}
	root := p.Root(&doc)
	if IsNull(root) {
		p.Errorf(root, "", "empty document: want %s", want)
		return nil
	}
	return root
}
