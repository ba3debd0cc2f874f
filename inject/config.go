package inject

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/horizonmesh/horizon/inject/capture"
)

// Config is the injector's configuration file (--injector-config): what
// every injected pod gets, whatever its cluster.
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

// check reports the first field of c that is wrong, by its name in the file.
func (c Config) check() (field string, err error) {
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return "trustDomain", err
	}
	if host, port, err := net.SplitHostPort(c.XDSAddress); err != nil || host == "" || port == "" {
		return "xdsAddress", fmt.Errorf("%q: want host:port of Horizon's mutual-TLS port", c.XDSAddress)
	}
	if id, err := spiffeid.FromString(c.XDSServerID); err != nil {
		return "xdsServerID", err
	} else if !id.MemberOf(td) {
		return "xdsServerID", fmt.Errorf("%s is not in trust domain %s", id, td)
	}
	if c.HorizonImage == "" {
		return "horizonImage", errors.New("required")
	}
	if c.ProxyImage == "" {
		return "proxyImage", errors.New("required")
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return "imagePullPolicy", fmt.Errorf("%q: want Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	if c.ProxyUID <= 0 || c.ProxyUID > 1<<31-1 {
		return "proxyUID", fmt.Errorf("%d: want a uid other than root's", c.ProxyUID)
	}
	if c.Capture.InboundPort == c.Capture.OutboundPort {
		return "capture.outboundPort", fmt.Errorf("%d is also the inbound port", c.Capture.OutboundPort)
	}
	for _, r := range c.Capture.ExcludeOutboundIPRanges {
		if _, _, err := capture.ParsePrefixes(r); err != nil || r == "*" {
			return "capture.excludeOutboundIPRanges", fmt.Errorf("%q is not a CIDR", r)
		}
	}
	return "", nil
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
		return Config{}, fmt.Errorf("%s:%d: %s: %w", name, fieldLine(data, field), field, err)
	}
	return c, nil
}

// fieldLine is the line of a field ("capture.outboundPort") in a YAML
// document, or 1 when it is not there (a default was wrong).
func fieldLine(data []byte, field string) int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return 1
	}
	n := doc.Content[0]
	line := 1
	for key := range strings.SplitSeq(field, ".") {
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
