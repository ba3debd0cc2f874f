package inject

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/horizonmesh/horizon/inject/capture"
)

// Config is the injector's configuration file (--injector-config): what
// every injected pod gets, whatever its cluster, but for what Clusters
// overrides for the pods of one cluster.
type Config struct {
	TrustDomain     string            `yaml:"trustDomain" json:"trustDomain"`
	XDSAddress      string            `yaml:"xdsAddress" json:"xdsAddress"`   // host:port of Horizon's mutual-TLS port
	XDSServerID     string            `yaml:"xdsServerID" json:"xdsServerID"` // SPIFFE ID Horizon's certificate carries
	TokenAudience   string            `yaml:"tokenAudience" json:"tokenAudience"`
	HorizonImage    string            `yaml:"horizonImage" json:"horizonImage"` // runs bootstrap, capture and agent
	ProxyImage      string            `yaml:"proxyImage" json:"proxyImage"`     // Envoy
	ImagePullPolicy corev1.PullPolicy `yaml:"imagePullPolicy" json:"imagePullPolicy"`
	ProxyUID        int64             `yaml:"proxyUID" json:"proxyUID"`
	Capture         CaptureConfig     `yaml:"capture" json:"capture"`
	// Clusters overrides settings for the pods of one member cluster, by
	// its name: the control plane serves the webhook of every member, and
	// pods in a cluster it does not run in cannot reach its Service.
	// Names of no member are allowed (the ClusterSet may gain them).
	Clusters map[string]ClusterConfig `yaml:"clusters,omitempty" json:"clusters,omitempty"`
}

// ClusterConfig is what the pods of one member cluster get instead of the
// Config's; an empty field keeps the Config's.
type ClusterConfig struct {
	XDSAddress string `yaml:"xdsAddress" json:"xdsAddress,omitempty"` // host:port of Horizon's mutual-TLS port, as that cluster's pods reach it
}

// xdsAddress is where the pods of cluster reach Horizon's mutual-TLS port.
func (c Config) xdsAddress(cluster string) string {
	if a := c.Clusters[cluster].XDSAddress; a != "" {
		return a
	}
	return c.XDSAddress
}

// CaptureConfig is the capture every sidecar pod gets unless its
// annotations say otherwise.
type CaptureConfig struct {
	InboundPort             uint16   `yaml:"inboundPort" json:"inboundPort"`
	OutboundPort            uint16   `yaml:"outboundPort" json:"outboundPort"`
	ExcludeInboundPorts     []uint16 `yaml:"excludeInboundPorts" json:"excludeInboundPorts"`
	ExcludeOutboundPorts    []uint16 `yaml:"excludeOutboundPorts" json:"excludeOutboundPorts"`
	ExcludeOutboundIPRanges []string `yaml:"excludeOutboundIPRanges" json:"excludeOutboundIPRanges"`
}

// Defaults of the fields a file may leave out.
const (
	DefaultTrustDomain   = "cluster.local"
	DefaultTokenAudience = "horizon"
)

// DefaultExcludeInboundPorts are the sidecar's own ports that are never
// captured inbound when the file names none: the agent's metrics (15020),
// health (15021) and Envoy's stats (15090).
var DefaultExcludeInboundPorts = []uint16{15020, 15021, 15090}

// withDefaults fills what c leaves out.
func (c Config) withDefaults() Config {
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultTrustDomain
	}
	if c.XDSServerID == "" {
		c.XDSServerID = "spiffe://" + c.TrustDomain + "/ns/horizon-system/sa/horizon"
	}
	if c.TokenAudience == "" {
		c.TokenAudience = DefaultTokenAudience
	}
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if c.ProxyUID == 0 {
		c.ProxyUID = capture.DefaultProxyUID
	}
	if c.Capture.InboundPort == 0 {
		c.Capture.InboundPort = capture.DefaultInboundPort
	}
	if c.Capture.OutboundPort == 0 {
		c.Capture.OutboundPort = capture.DefaultOutboundPort
	}
	if c.Capture.ExcludeInboundPorts == nil {
		c.Capture.ExcludeInboundPorts = DefaultExcludeInboundPorts
	}
	return c
}

// check reports the first field of c that is wrong, by its path in the
// file (["capture", "outboundPort"]).
func (c Config) check() (field []string, err error) {
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return path("trustDomain"), err
	}
	if err := checkAddress(c.XDSAddress); err != nil {
		return path("xdsAddress"), err
	}
	for _, name := range slices.Sorted(maps.Keys(c.Clusters)) {
		if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
			return []string{"clusters", name}, fmt.Errorf("want a cluster's name, a DNS label: %s", msgs[0])
		}
		if a := c.Clusters[name].XDSAddress; a != "" {
			if err := checkAddress(a); err != nil {
				return []string{"clusters", name, "xdsAddress"}, err
			}
		}
	}
	if id, err := spiffeid.FromString(c.XDSServerID); err != nil {
		return path("xdsServerID"), err
	} else if !id.MemberOf(td) {
		return path("xdsServerID"), fmt.Errorf("%s is not in trust domain %s", id, td)
	}
	if c.HorizonImage == "" {
		return path("horizonImage"), errors.New("required")
	}
	if c.ProxyImage == "" {
		return path("proxyImage"), errors.New("required")
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return path("imagePullPolicy"), fmt.Errorf("%q: want Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	if c.ProxyUID <= 0 || c.ProxyUID > 1<<31-1 {
		return path("proxyUID"), fmt.Errorf("%d: want a uid other than root's", c.ProxyUID)
	}
	if c.Capture.InboundPort == c.Capture.OutboundPort {
		return path("capture.outboundPort"), fmt.Errorf("%d is also the inbound port", c.Capture.OutboundPort)
	}
	for _, r := range c.Capture.ExcludeOutboundIPRanges {
		if _, _, err := capture.ParsePrefixes(r); err != nil || r == "*" {
			return path("capture.excludeOutboundIPRanges"), fmt.Errorf("%q is not a CIDR", r)
		}
	}
	return nil, nil
}

// path splits a field's name in the file at its dots.
func path(field string) []string { return strings.Split(field, ".") }

func checkAddress(addr string) error {
	if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
		return fmt.Errorf("%q: want host:port of Horizon's mutual-TLS port", addr)
	}
	return nil
}

// Version is a short content hash of c: the version the status annotation
// of a pod injected with c carries.
func (c Config) Version() string {
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// LoadConfig reads and checks the configuration file at path.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("injector config: %w", err)
	}
	return ParseConfig(path, data)
}

// yamlLine finds "line N: message" in yaml.v3's errors.
var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// ParseConfig reads a configuration file's content, strictly (an unknown
// field is an error), fills the defaults and checks it. Errors name the
// file and line: "name:line: field: message".
func ParseConfig(name string, data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var msgs []string
			for _, e := range te.Errors {
				if m := yamlLine.FindStringSubmatch(e); m != nil {
					msgs = append(msgs, name+":"+m[1]+": "+m[2])
				} else {
					msgs = append(msgs, name+": "+e)
				}
			}
			return Config{}, errors.New(strings.Join(msgs, "\n"))
		}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			return Config{}, fmt.Errorf("%s:%s: %s", name, m[1], m[2])
		}
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	c = c.withDefaults()
	if field, err := c.check(); err != nil {
		return Config{}, fmt.Errorf("%s:%d: %s: %w", name, fieldLine(data, field), strings.Join(field, "."), err)
	}
	return c, nil
}

// fieldLine is the line of a field (["capture", "outboundPort"]) in a
// YAML document: of its deepest key there, or 1 when it is not there (a
// default was wrong).
func fieldLine(data []byte, field []string) int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return 1
	}
	n := doc.Content[0]
	line := 1
	for _, key := range field {
		found := false
		for i := 0; n != nil && n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line, n, found = n.Content[i].Line, n.Content[i+1], true
				break
			}
		}
		if !found {
			break
		}
	}
	return line
}

// spec is the capture of a pod: c's, overridden by the pod's annotations.
func (c CaptureConfig) spec(uid int64, ann map[string]string) (capture.Spec, error) {
	s := capture.Spec{
		InboundPort: c.InboundPort, OutboundPort: c.OutboundPort, ProxyUID: uint32(uid),
		AllInbound: true, ExcludeInboundPorts: c.ExcludeInboundPorts,
		ExcludeOutboundPorts: c.ExcludeOutboundPorts, AllOutbound: true,
	}
	_, s.ExcludeOutboundIPRanges, _ = capture.ParsePrefixes(strings.Join(c.ExcludeOutboundIPRanges, ","))
	var errs []error
	ports := func(key string, all *bool, dst *[]uint16) {
		v, ok := ann[key]
		if !ok {
			return
		}
		a, p, err := capture.ParsePorts(v)
		if err == nil && all == nil && a {
			err = errors.New(`"*" is not allowed here`)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s=%q: %w", key, v, err))
			return
		}
		if all != nil {
			*all = a
		}
		*dst = p
	}
	prefixes := func(key string, all *bool, dst *[]netip.Prefix) {
		v, ok := ann[key]
		if !ok {
			return
		}
		a, p, err := capture.ParsePrefixes(v)
		if err == nil && all == nil && a {
			err = errors.New(`"*" is not allowed here`)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s=%q: %w", key, v, err))
			return
		}
		if all != nil {
			*all = a
		}
		*dst = p
	}
	ports(AnnotationIncludeInboundPorts, &s.AllInbound, &s.IncludeInboundPorts)
	ports(AnnotationExcludeInboundPorts, nil, &s.ExcludeInboundPorts)
	ports(AnnotationExcludeOutboundPorts, nil, &s.ExcludeOutboundPorts)
	prefixes(AnnotationIncludeOutboundIPRanges, &s.AllOutbound, &s.IncludeOutboundIPRanges)
	prefixes(AnnotationExcludeOutboundIPRanges, nil, &s.ExcludeOutboundIPRanges)
	for _, p := range s.IncludeInboundPorts {
		if p == c.InboundPort || p == c.OutboundPort {
			errs = append(errs, fmt.Errorf("annotation %s: port %d is the sidecar's own", AnnotationIncludeInboundPorts, p))
		}
	}
	return s, errors.Join(errs...)
}
