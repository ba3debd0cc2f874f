// This file adapts yamlnode's strict reader to the ClusterSet format: its
// messages ("file:line:col: path: message", as the policy file's) and the
// values only it has, port numbers and timestamps; parse.go holds the format
// itself.

package file

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/yamlnode"
)

// parser collects the problems of one file while it walks its nodes.
type parser struct {
	yamlnode.Parser
	// workloadsFile: a workloads file (ParseWorkloads), where clusters:
	// is optional.
	workloadsFile bool
	groups        []groupAt // the workloadGroups: list, read by document
	// claims holds the aliases claimed so far (aliases.go).
	claims map[string]aliasClaim
	// external are the file's external services (external.go).
	external []discovery.ExternalService
}

func newParser(file string) *parser {
	p := &parser{}
	p.Init(file, false, MaxFileSize)
	return p
}

// port returns a port number field of o (1-65535), or 0 when absent, null or
// bad.
func (p *parser) port(o *yamlnode.Object, key string, required bool) uint32 {
	n, ok := o.Set(key)
	if !ok {
		if required {
			o.Missing(key)
		}
		return 0
	}
	port, _ := p.portNumber(n, o.Where(), key)
	return port
}

// portNumber reads a port number, the value of field of the object named
// where.
func (p *parser) portNumber(n *yaml.Node, where, field string) (uint32, bool) {
	var i int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
		p.FieldErrorf(n, where, field, "want a port number, got %s", yamlnode.Describe(n))
		return 0, false
	}
	if i < 1 || i > 65535 {
		p.FieldErrorf(n, where, field, "%d is out of range 1-65535", i)
		return 0, false
	}
	return uint32(i), true
}

// timestamp returns an RFC 3339 timestamp field of o; the zero time when
// absent or null.
func timestamp(o *yamlnode.Object, key string) time.Time {
	n, ok := o.Set(key)
	if !ok {
		return time.Time{}
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!timestamp" && n.ShortTag() != "!!str" {
		o.Errorf(key, "want an RFC 3339 timestamp, got %s", yamlnode.Describe(n))
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		o.Errorf(key, "%q is not an RFC 3339 timestamp (like 2026-01-02T03:04:05Z)", n.Value)
		return time.Time{}
	}
	return t
}
