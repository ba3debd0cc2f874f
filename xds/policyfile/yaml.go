// This file adapts yamlnode's strict reader (the one discovery/file uses too)
// to the policy format: its messages carry the line, the column and the path
// of the value at fault ("file:line:col: path: message"), and its values
// include bounded integers and durations; parse.go holds the format itself.

package policyfile

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/discovery/yamlnode"
)

// parser collects the problems of one file while it walks its nodes.
type parser struct {
	yamlnode.Reader
	file     string
	errs     []*Error
	warnings []*Error
}

func newParser(file string) *parser {
	p := &parser{file: file, Reader: yamlnode.Reader{ListKnown: true}}
	p.Report = p.report
	return p
}

// report turns a problem into an Error at the path of the value at fault:
// a field extends the path (defaults.retries), a key of a free-form mapping
// indexes it (weights[east-1]).
func (p *parser) report(pr yamlnode.Problem) {
	path := pr.Where
	if pr.Field != "" {
		path = join(path, pr.Field)
	}
	if pr.Key != nil {
		if pr.Field == "" {
			path = join(path, pr.Key.Value)
		} else {
			path = index(path, pr.Key.Value)
		}
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: pr.Line, Col: pr.Col, Path: path, Msg: pr.Msg})
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

// yamlError turns an error of the YAML parser into an Error at yaml's own line
// (yaml gives no column).
func (p *parser) yamlError(data []byte, err error) {
	line, msg := yamlnode.SyntaxError(data, err)
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Col: 1, Msg: msg})
}

// join extends a path with a field name.
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// index extends a path with a list index or map key: services[demo/echo],
// to[1], weights[east-1].
func index(path string, i any) string { return fmt.Sprintf("%s[%v]", path, i) }

// integer reads an integer in [lo, hi].
func (p *parser) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	var i int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
		p.Errorf(n, path, "want an integer, got %s", yamlnode.Describe(n))
		return 0, false
	}
	if i < lo || i > hi {
		p.Errorf(n, path, "%d is out of range %d-%d", i, lo, hi)
		return 0, false
	}
	return i, true
}

// uint returns an integer field of o in [lo, hi] and whether it was given and
// valid.
func (p *parser) uint(o *yamlnode.Object, key string, lo, hi int64) (uint32, bool) {
	n, ok := o.Set(key)
	if !ok {
		return 0, false
	}
	i, ok := p.integer(n, join(o.Where(), key), lo, hi)
	return uint32(i), ok
}

// maxDuration bounds every duration of the format: a day is more than any
// timeout or ejection time should be, and keeps arithmetic far from overflow.
const maxDuration = 24 * time.Hour

// duration returns a positive duration field of o written as Go writes them
// ("250ms", "5s", "1m30s"), and whether it was given and valid.
func duration(o *yamlnode.Object, key string) (time.Duration, bool) {
	n, ok := o.Set(key)
	if !ok {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		o.Errorf(key, "want a duration like 5s or 250ms, got %s", yamlnode.Describe(n))
		return 0, false
	}
	d, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		o.Errorf(key, "%q is not a duration (like 5s, 250ms or 1m30s)", n.Value)
	case d <= 0:
		o.Errorf(key, "%s: want a positive duration", n.Value)
	case d > maxDuration:
		o.Errorf(key, "%s is longer than %s", n.Value, maxDuration)
	default:
		return d, true
	}
	return 0, false
}
