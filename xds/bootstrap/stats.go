package bootstrap

import (
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Stats tags of Envoy bootstraps.
//
// Envoy turns parts of a stat's name into tags (Prometheus labels) with
// regular expressions: the first capture group is cut out of the name, the
// second (or the first, if alone) is the tag's value, and every extractor
// reads the original name
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/metrics/v3/stats.proto#envoy-v3-api-field-config-metrics-v3-tagspecifier-regex).
// Its default envoy.cluster_name extractor takes the name up to the first
// dot, and every Horizon cluster is named outbound_.<port>_._.<host>
// (discovery.ClusterName), so all of their stats would be tagged
// envoy.cluster_name="outbound_" and keep the rest of the cluster name in
// the stat's name: one Prometheus metric name per cluster, and a tag that
// tells them apart not at all.
//
// Envoy runs configured regexes as ECMAScript (std::regex_search), its
// default ones as RE2; the expressions here use only what both read alike
// (no lookaround, no backreferences, [0-9] rather than \d), so Go's regexp
// tests them faithfully.

// Parts of a Horizon cluster name, outbound_.<port>_._.<svc>.<ns>.svc.<domain>;
// hzClusterRe matches a whole one, and each horizon.* tag captures one part.
const (
	hzPort      = `[0-9]+`
	hzLabel     = `[^.]+` // a Kubernetes name: no dots
	hzDomain    = `cluster(?:set)?\.local`
	hzClusterRe = `outbound_\.` + hzPort + `_\._\.` + hzLabel + `\.` + hzLabel + `\.svc\.` + hzDomain
)

// statsTags are the bootstrap's tag extractors.
//
// envoy.cluster_name is redefined: a Horizon cluster's whole name, any other
// cluster's name up to the first dot as before. While Envoy's default
// extractors are on, a second envoy.cluster_name extractor does not win:
// older Envoys refuse the configuration ("If any default tags are specified
// twice, the config will be considered invalid"), newer ones keep the
// default's value unless allow_default_tag_overrides is set, a field too new
// to rely on. So the defaults are turned off (use_all_default_tags false) and
// the ones Horizon's configuration can produce are asked for again by name,
// which gives each its default regex ("If a tag_name is provided in the
// config and neither regex or fixed_value were specified, Envoy will attempt
// to find that name in its set of defaults"). Each name was checked in
// Envoy's well_known_names.{h,cc}, in an old version (common/config/, before
// Envoy moved its sources under source/) and a recent one.
//
// horizon.service, horizon.namespace, horizon.port and horizon.domain
// (cluster.local or clusterset.local) split a Horizon cluster's name, so that
// dashboards can sum by service across ports and clusters.
func statsTags() *metricsv3.StatsConfig {
	regex := func(name, re string) *metricsv3.TagSpecifier {
		return &metricsv3.TagSpecifier{TagName: name, TagValue: &metricsv3.TagSpecifier_Regex{Regex: re}}
	}
	tags := []*metricsv3.TagSpecifier{
		regex("envoy.cluster_name", `^cluster\.((`+hzClusterRe+`|[^.]+)\.)`),
		regex("horizon.port", `^cluster\.outbound_\.(`+hzPort+`)_\._\.`+hzLabel+`\.`+hzLabel+`\.svc\.`+hzDomain+`\.`),
		regex("horizon.service", `^cluster\.outbound_\.`+hzPort+`_\._\.(`+hzLabel+`)\.`+hzLabel+`\.svc\.`+hzDomain+`\.`),
		regex("horizon.namespace", `^cluster\.outbound_\.`+hzPort+`_\._\.`+hzLabel+`\.(`+hzLabel+`)\.svc\.`+hzDomain+`\.`),
		regex("horizon.domain", `^cluster\.outbound_\.`+hzPort+`_\._\.`+hzLabel+`\.`+hzLabel+`\.svc\.(`+hzDomain+`)\.`),
	}
	for _, name := range envoyDefaultTagsKept {
		tags = append(tags, &metricsv3.TagSpecifier{TagName: name})
	}
	return &metricsv3.StatsConfig{UseAllDefaultTags: wrapperspb.Bool(false), StatsTags: tags}
}

// envoyDefaultTagsKept are the Envoy default tags the bootstrap keeps: those
// of the listeners, HTTP connection managers, routes, TCP proxies and TLS
// that Horizon configures. Left out are the tags of filters Horizon never
// configures (Mongo, DynamoDB, Redis, Thrift, gRPC bridge, fault, rate
// limits, client SSL auth, ext_authz) and the newer tags (TLS curves,
// signature algorithms and versions, routes' stat prefixes), which an older
// Envoy would refuse by name ("No regex specified for tag specifier and no
// default regex for name").
var envoyDefaultTagsKept = []string{
	"envoy.listener_address",
	"envoy.http_conn_manager_prefix",
	"envoy.http_user_agent",
	"envoy.rds_route_config",
	"envoy.virtual_host",
	"envoy.virtual_cluster",
	"envoy.response_code",
	"envoy.response_code_class",
	"envoy.tcp_prefix",
	"envoy.ssl_cipher",
	"cipher_suite",
	"envoy.worker_id",
}
