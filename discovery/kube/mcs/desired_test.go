package mcs_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
)

// fixture is one case of testdata/desired: the member clusters' objects and
// the plan Desired must make of them.
type fixture struct {
	// CIDRs configure the allocator (default: mcs.DefaultCIDR).
	CIDRs []string `json:"cidrs"`
	// Unmerged lists exports (cluster/namespace/name) the members' caches
	// hold but the ClusterSet has not merged yet.
	Unmerged []string         `json:"unmerged"`
	Clusters []fixtureCluster `json:"clusters"`
	Want     summary          `json:"want"`
	// Mentions lists words the message of a condition ("cluster/ns/name
	// Type") must contain.
	Mentions map[string][]string `json:"mentions"`
}

type fixtureCluster struct {
	Name       string                     `json:"name"`
	Namespaces []string                   `json:"namespaces"`
	Services   []corev1.Service           `json:"services"`
	Exports    []mcsv1beta1.ServiceExport `json:"exports"`
	Imports    []mcsv1beta1.ServiceImport `json:"imports"`
}

// summary is a plan in a form a person can write by hand.
type summary struct {
	// Exports: "cluster/ns/name" -> ["Type=Status/Reason", ...].
	Exports map[string][]string `json:"exports,omitempty"`
	// Imports: "cluster/ns/name" -> the import.
	Imports  map[string]importSummary `json:"imports,omitempty"`
	Deletes  []string                 `json:"deletes,omitempty"`
	Foreign  []string                 `json:"foreign,omitempty"`
	Problems []string                 `json:"problems,omitempty"`
}

type importSummary struct {
	Type     string   `json:"type"`
	Ports    []string `json:"ports"` // name/port/protocol[/appProtocol]
	IPs      []string `json:"ips,omitempty"`
	Families []string `json:"families,omitempty"`
	Affinity string   `json:"affinity"` // None, or ClientIP[/timeoutSeconds]
	Clusters []string `json:"clusters"`
	// The import's metadata copied from the winning export.
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// InternalTrafficPolicy and TrafficDistribution: "" when unset.
	InternalTrafficPolicy string `json:"internalTrafficPolicy,omitempty"`
	TrafficDistribution   string `json:"trafficDistribution,omitempty"`
}

func summarize(p mcs.Plan) summary {
	s := summary{Exports: map[string][]string{}, Imports: map[string]importSummary{}}
	for _, e := range p.Exports {
		for _, c := range e.Conditions {
			s.Exports[e.Ref.String()] = append(s.Exports[e.Ref.String()], fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
		}
	}
	for _, im := range p.Imports {
		is := importSummary{Type: string(im.Spec.Type), IPs: im.Spec.IPs, Affinity: string(im.Spec.SessionAffinity), Clusters: im.Clusters, Ports: []string{},
			Labels: im.Labels, Annotations: im.Annotations}
		if p := im.Spec.InternalTrafficPolicy; p != nil {
			is.InternalTrafficPolicy = string(*p)
		}
		if d := im.Spec.TrafficDistribution; d != nil {
			is.TrafficDistribution = *d
		}
		for _, f := range im.Spec.IPFamilies {
			is.Families = append(is.Families, string(f))
		}
		if c := im.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			is.Affinity += fmt.Sprintf("/%d", *c.ClientIP.TimeoutSeconds)
		}
		for _, port := range im.Spec.Ports {
			ps := fmt.Sprintf("%s/%d/%s", port.Name, port.Port, port.Protocol)
			if port.AppProtocol != nil {
				ps += "/" + *port.AppProtocol
			}
			is.Ports = append(is.Ports, ps)
		}
		s.Imports[im.Ref.String()] = is
	}
	for _, r := range p.Deletes {
		s.Deletes = append(s.Deletes, r.String())
	}
	for _, r := range p.Foreign {
		s.Foreign = append(s.Foreign, r.String())
	}
	s.Problems = p.Problems
	if len(s.Exports) == 0 {
		s.Exports = nil
	}
	if len(s.Imports) == 0 {
		s.Imports = nil
	}
	return s
}

// staticMember is a member cluster whose caches hold fixed objects.
type staticMember struct {
	id         string
	namespaces []string
	services   []*corev1.Service
	exports    []*mcsv1beta1.ServiceExport
	imports    []*mcsv1beta1.ServiceImport
	client     mcsclient.Interface
}

func (m *staticMember) ID() string                                  { return m.id }
func (m *staticMember) MCS() mcsclient.Interface                    { return m.client }
func (m *staticMember) ServiceExports() []*mcsv1beta1.ServiceExport { return m.exports }
func (m *staticMember) ServiceImports() []*mcsv1beta1.ServiceImport { return m.imports }
func (m *staticMember) Namespaces() []string                        { return m.namespaces }
func (m *staticMember) Service(ns, name string) (*corev1.Service, bool) {
	for _, s := range m.services {
		if s.Namespace == ns && s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// defaultService fills in what the API server would.
func defaultService(s *corev1.Service) {
	if s.Spec.Type == "" {
		s.Spec.Type = corev1.ServiceTypeClusterIP
	}
	if s.Spec.SessionAffinity == "" {
		s.Spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP && s.Spec.SessionAffinityConfig == nil {
		timeout := int32(corev1.DefaultClientIPServiceAffinitySeconds)
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	}
	for i := range s.Spec.Ports {
		if s.Spec.Ports[i].Protocol == "" {
			s.Spec.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
}

// load reads a fixture and turns it into what the controller would see: the
// ClusterSet the Kubernetes source builds from the same objects, and the
// members' states.
func load(t *testing.T, path string) (fixture, *discovery.ClusterSet, []mcs.MemberState) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var clusters []discovery.Cluster
	var states []mcs.MemberState
	for _, fc := range f.Clusters {
		m := &staticMember{id: fc.Name, namespaces: fc.Namespaces}
		var merged []*mcsv1beta1.ServiceExport
		for i := range fc.Services {
			defaultService(&fc.Services[i])
			m.services = append(m.services, &fc.Services[i])
		}
		for i := range fc.Exports {
			ex := &fc.Exports[i]
			m.exports = append(m.exports, ex)
			if !slices.Contains(f.Unmerged, fc.Name+"/"+ex.Namespace+"/"+ex.Name) {
				merged = append(merged, ex)
			}
		}
		for i := range fc.Imports {
			m.imports = append(m.imports, &fc.Imports[i])
		}
		c, problems := kube.Build(kube.MemberConfig{Name: fc.Name, Network: "net-" + fc.Name}, kube.Objects{Services: m.services, Exports: merged})
		if len(problems) > 0 {
			t.Fatalf("%s: cluster %s: %v", path, fc.Name, problems)
		}
		clusters = append(clusters, c)
		states = append(states, mcs.State(m))
	}
	kube.DropAliasConflicts(clusters) // as the Kubernetes source does
	cs, err := discovery.New(clusters)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f, cs, states
}

func allocator(t *testing.T, cidrs []string) *mcs.Allocator {
	t.Helper()
	a, err := mcs.NewAllocator(cidrs...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestDesired runs every case in testdata/desired: the rules for conditions,
// imports, deletions and ClusterSet IPs.
func TestDesired(t *testing.T) {
	files, err := filepath.Glob("testdata/desired/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			f, cs, states := load(t, path)
			plan := mcs.Desired(cs, states, allocator(t, f.CIDRs))
			got := summarize(plan)
			if !reflect.DeepEqual(got, f.Want) {
				g, _ := yaml.Marshal(got)
				w, _ := yaml.Marshal(f.Want)
				t.Errorf("plan differs\n--- got:\n%s\n--- want:\n%s", g, w)
			}
			for where, words := range f.Mentions {
				ref, typ, _ := strings.Cut(where, " ")
				msg, ok := message(plan, ref, typ)
				if !ok {
					t.Errorf("%s: no such condition", where)
					continue
				}
				for _, w := range words {
					if !strings.Contains(msg, w) {
						t.Errorf("%s: message %q does not mention %q", where, msg, w)
					}
				}
			}
			for _, e := range plan.Exports {
				for _, c := range e.Conditions {
					if !c.LastTransitionTime.IsZero() {
						t.Errorf("%s %s: Desired stamped a transition time", e.Ref, c.Type)
					}
				}
			}
		})
	}
}

func message(p mcs.Plan, ref, typ string) (string, bool) {
	for _, e := range p.Exports {
		if e.Ref.String() != ref {
			continue
		}
		for _, c := range e.Conditions {
			if c.Type == typ {
				return c.Message, true
			}
		}
	}
	return "", false
}

// TestDesiredDeterministic: the plan does not depend on the order members
// come in, and replicas with fresh allocators agree.
func TestDesiredDeterministic(t *testing.T) {
	files, _ := filepath.Glob("testdata/desired/*.yaml")
	for _, path := range files {
		f, cs, states := load(t, path)
		want := mcs.Desired(cs, states, allocator(t, f.CIDRs))
		for i := range 5 {
			shuffled := slices.Clone(states)
			rand.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
			got := mcs.Desired(cs, shuffled, allocator(t, f.CIDRs))
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: shuffle %d gives a different plan", path, i)
			}
		}
	}
}

// TestDesiredNilClusterSet: before the first ClusterSet nothing is planned,
// above all no deletion.
func TestDesiredNilClusterSet(t *testing.T) {
	_, _, states := load(t, "testdata/desired/last-export-gone.yaml")
	p := mcs.Desired(nil, states, allocator(t, nil))
	if !reflect.DeepEqual(p, mcs.Plan{}) {
		t.Fatalf("plan without a ClusterSet: %+v", p)
	}
}
