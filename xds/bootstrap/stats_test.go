package bootstrap

import (
	"fmt"
	"maps"
	"regexp"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

	"github.com/horizonmesh/horizon/discovery"
)

type tagSpec struct{ name, regex string }

// envoyDefaultTags are two of Envoy's default tag extractors, for the
// emulation below: envoy.response_code as source/common/config/
// well_known_names.cc defines it, and envoy.cluster_name as the
// TagSpecifier.regex documentation gives it (Example 1).
var envoyDefaultTags = []tagSpec{
	{"envoy.response_code", `_rq(_(\d{3}))$`},
	{"envoy.cluster_name", `^cluster\.((.+?)\.)`},
}

// tagSpecs lists the regex tag extractors Envoy runs for a bootstrap, in
// order: with use_all_default_tags unset or true, Envoy's defaults first
// ("They will be processed before the custom tags"), then stats_tags. A
// stats_tags entry with a tag_name and no regex "will attempt to find that
// name in its set of defaults and use the accompanying regex"; only the
// defaults in envoyDefaultTags are emulated, the others are left out.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/metrics/v3/stats.proto#envoy-v3-api-msg-config-metrics-v3-statsconfig
func tagSpecs(b *bootstrapv3.Bootstrap) []tagSpec {
	var specs []tagSpec
	sc := b.GetStatsConfig()
	if sc.GetUseAllDefaultTags() == nil || sc.GetUseAllDefaultTags().GetValue() {
		specs = append(specs, envoyDefaultTags...)
	}
	for _, ts := range sc.GetStatsTags() {
		regex := ts.GetRegex()
		if regex == "" && ts.GetFixedValue() == "" {
			for _, d := range envoyDefaultTags {
				if d.name == ts.GetTagName() {
					regex = d.regex
				}
			}
		}
		if regex != "" {
			specs = append(specs, tagSpec{ts.GetTagName(), regex})
		}
	}
	return specs
}

// applyTags extracts tags from a stat name as Envoy's documentation says it
// does, and returns the tag-extracted name and the tags.
//
// StatsConfig.stats_tags: "Each stat name is independently processed through
// these tag specifiers. When a tag is matched, the first capture group is not
// immediately removed from the name, so later TagSpecifiers can also match
// that same portion of the match. After all tag matching is complete, a
// tag-extracted version of the name is produced."
//
// TagSpecifier.regex: "The first capture group identifies the portion of the
// name to remove. The second capture group (which will normally be nested
// inside the first) will designate the value of the tag for the statistic. If
// no second capture group is provided, the first will also be used to set the
// value of the tag. All other capture groups will be ignored."
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/metrics/v3/stats.proto#envoy-v3-api-field-config-metrics-v3-tagspecifier-regex
//
// TagSpecifier.tag_name: when two extractors of one name match, "all but one
// of the tag values will be dropped"; here the first is kept.
//
// Envoy runs a configured regex with std::regex_search, an unanchored search
// in ECMAScript syntax (createTagExtractor defaults to Regex::Type::StdRegex,
// source/common/stats/tag_extractor_impl.h); for expressions without
// lookaround or backreferences it matches what Go's leftmost-first RE2
// search, FindStringSubmatchIndex, matches.
func applyTags(specs []tagSpec, stat string) (string, map[string]string) {
	tags := map[string]string{}
	remove := make([]bool, len(stat))
	for _, s := range specs {
		if _, dup := tags[s.name]; dup {
			continue
		}
		re := regexp.MustCompile(s.regex)
		m := re.FindStringSubmatchIndex(stat)
		if m == nil || re.NumSubexp() < 1 || m[2] < 0 {
			continue
		}
		value := stat[m[2]:m[3]]
		if re.NumSubexp() >= 2 {
			value = ""
			if m[4] >= 0 {
				value = stat[m[4]:m[5]]
			}
		}
		tags[s.name] = value
		for i := m[2]; i < m[3]; i++ {
			remove[i] = true
		}
	}
	var name strings.Builder
	for i := range stat {
		if !remove[i] {
			name.WriteByte(stat[i])
		}
	}
	return name.String(), tags
}

// TestEnvoyDefaultClusterTag is why Horizon sets its own tags: Envoy's
// default envoy.cluster_name regex stops at the first dot, and every Horizon
// cluster name starts "outbound_.", so all of their stats would share one
// tag value and keep the rest of the cluster name in the stat's name.
func TestEnvoyDefaultClusterTag(t *testing.T) {
	name, tags := applyTags(envoyDefaultTags, "cluster.outbound_.7070_._.echo.demo.svc.clusterset.local.upstream_rq_total")
	if tags["envoy.cluster_name"] != "outbound_" || name != "cluster.7070_._.echo.demo.svc.clusterset.local.upstream_rq_total" {
		t.Errorf("Envoy's default: name %q, tags %v", name, tags)
	}
}

// TestBootstrapStatsTags: with the bootstrap's stats_config, the stats of a
// Horizon cluster carry its whole name as envoy.cluster_name and its service,
// namespace, port and domain as horizon.* tags, and their tag-extracted name
// is the same for every cluster; other clusters keep Envoy's usual tag.
func TestBootstrapStatsTags(t *testing.T) {
	for _, role := range []string{"sidecar", "gateway"} {
		specs := tagSpecs(envoyOf(t, config(role)))
		for _, tt := range []struct {
			stat, name string
			tags       map[string]string
		}{
			{
				"cluster.outbound_.7070_._.echo.demo.svc.clusterset.local.upstream_rq_total", "cluster.upstream_rq_total",
				map[string]string{
					"envoy.cluster_name": "outbound_.7070_._.echo.demo.svc.clusterset.local",
					"horizon.service":    "echo", "horizon.namespace": "demo", "horizon.port": "7070", "horizon.domain": "clusterset.local",
				},
			},
			{
				"cluster.outbound_.80_._.web.shop.svc.cluster.local.circuit_breakers.default.rq_open", "cluster.circuit_breakers.default.rq_open",
				map[string]string{
					"envoy.cluster_name": "outbound_.80_._.web.shop.svc.cluster.local",
					"horizon.service":    "web", "horizon.namespace": "shop", "horizon.port": "80", "horizon.domain": "cluster.local",
				},
			},
			{
				// Envoy's default envoy.response_code still applies.
				"cluster.outbound_.7070_._.echo.demo.svc.clusterset.local.upstream_rq_503", "cluster.upstream_rq",
				map[string]string{
					"envoy.cluster_name": "outbound_.7070_._.echo.demo.svc.clusterset.local", "envoy.response_code": "503",
					"horizon.service": "echo", "horizon.namespace": "demo", "horizon.port": "7070", "horizon.domain": "clusterset.local",
				},
			},
			{"cluster.xds-grpc.upstream_cx_total", "cluster.upstream_cx_total", map[string]string{"envoy.cluster_name": "xds-grpc"}},
			{"cluster.PassthroughCluster.upstream_cx_active", "cluster.upstream_cx_active", map[string]string{"envoy.cluster_name": "PassthroughCluster"}},
			{"cluster_manager.cds.update_success", "cluster_manager.cds.update_success", map[string]string{}},
		} {
			name, tags := applyTags(specs, tt.stat)
			if name != tt.name || !maps.Equal(tags, tt.tags) {
				t.Errorf("%s: %s:\n got name %q tags %v\nwant name %q tags %v", role, tt.stat, name, tags, tt.name, tt.tags)
			}
		}
	}
}

// TestStatsTagsFollowClusterName: the tags read back what discovery.Host and
// discovery.ClusterName put into a cluster name, so the two cannot drift.
func TestStatsTagsFollowClusterName(t *testing.T) {
	specs := tagSpecs(envoyOf(t, config("sidecar")))
	for _, key := range []discovery.ServiceKey{{Namespace: "demo", Name: "echo"}, {Namespace: "a-b", Name: "x1"}, {Namespace: "n", Name: "svc-with-dashes"}} {
		for _, scope := range []discovery.Scope{discovery.ClusterLocal, discovery.ClusterSetWide} {
			for _, port := range []uint32{1, 80, 65535} {
				host := discovery.Host(key, scope)
				cluster := discovery.ClusterName(host, port)
				name, tags := applyTags(specs, "cluster."+cluster+".upstream_cx_total")
				want := map[string]string{
					"envoy.cluster_name": cluster, "horizon.service": key.Name, "horizon.namespace": key.Namespace,
					"horizon.port": fmt.Sprint(port), "horizon.domain": strings.TrimPrefix(host, key.Name+"."+key.Namespace+".svc."),
				}
				if name != "cluster.upstream_cx_total" || !maps.Equal(tags, want) {
					t.Errorf("%s: name %q tags %v, want cluster.upstream_cx_total %v", cluster, name, tags, want)
				}
			}
		}
	}
}
