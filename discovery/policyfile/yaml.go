// This file adapts yamlnode's strict reader (the one discovery/file uses too)
// to the policy format: its messages carry the line, the column and the path
// of the value at fault ("file:line:col: path: message"), and its values
// include bounded integers and durations; parse.go holds the format itself.

package policyfile

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/internal/yamlnode"
)

// parser collects the problems of one file while it walks its nodes.
type parser struct{ yamlnode.Parser }

func newParser(file string) *parser {
	p := &parser{}
	p.Init(file, true, MaxFileSize)
	return p
}

// join and index build the path of a value (yamlnode.Join, yamlnode.Index).
var (
	join  = yamlnode.Join
	index = yamlnode.Index
)

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
