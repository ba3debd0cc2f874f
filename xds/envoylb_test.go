package xds

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
)

// No Envoy binary runs here, so these tests compute what Envoy does with a
// cluster and its ClusterLoadAssignment from Envoy's documented load-balancing
// arithmetic, and check that against what the policy says.
//
//   - Priority levels: a level's health is min(100, overprovisioning factor ×
//     healthy / hosts) (factor in percent, 140 by default); the normalized
//     total health is min(100, Σ health); level 0 takes health(P0) × 100 /
//     normalized total, each next level min(100 − what the levels above
//     took, health(Px) × 100 / normalized total).
//     https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/priority
//   - Panic threshold (50 % unless the cluster sets
//     common_lb_config.healthy_panic_threshold; 0 disables it): while the
//     normalized total health is below 100, a level whose healthy share is
//     below the threshold sends its load to all its hosts, healthy or not.
//     https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/panic_threshold
//   - Within a level, only with common_lb_config.locality_weighted_lb_config:
//     a locality is picked by load_balancing_weight × min(100,
//     availability), availability = factor × healthy / hosts of the
//     locality; then a host of it by host weight. Without it Envoy ignores
//     locality weights and picks a healthy host of the level by host weight.
//     https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/locality_weight
//   - Health: EDS HEALTHY and UNKNOWN hosts are healthy; UNHEALTHY, DRAINING
//     and TIMEOUT ones are not (DEGRADED is not rendered by Horizon).
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/health_check.proto#enum-config-core-v3-healthstatus
type envoyLoad struct {
	// Priority is the share of requests (0-1) each level takes.
	Priority []float64
	// Host is the share of requests each host:port gets.
	Host map[string]float64
	// Panic lists the levels in panic mode.
	Panic []int
}

func envoyHealthy(s core.HealthStatus) bool {
	return s == core.HealthStatus_HEALTHY || s == core.HealthStatus_UNKNOWN
}

func hostKey(lb *endpoint.LbEndpoint) string {
	sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
	return fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
}

// envoyBalance computes the share of requests Envoy sends to each host of an
// assignment, by the formulas above.
func envoyBalance(c *cluster.Cluster, cla *endpoint.ClusterLoadAssignment) envoyLoad {
	factor := 140.0
	if f := cla.GetPolicy().GetOverprovisioningFactor(); f != nil {
		factor = float64(f.GetValue())
	}
	panicAt := 50.0
	if p := c.GetCommonLbConfig().GetHealthyPanicThreshold(); p != nil {
		panicAt = p.GetValue()
	}
	weighted := c.GetCommonLbConfig().GetLocalityWeightedLbConfig() != nil

	var levels [][]*endpoint.LocalityLbEndpoints
	for _, lle := range cla.GetEndpoints() {
		for int(lle.GetPriority()) >= len(levels) {
			levels = append(levels, nil)
		}
		levels[lle.GetPriority()] = append(levels[lle.GetPriority()], lle)
	}
	count := func(lles []*endpoint.LocalityLbEndpoints) (healthy, total float64) {
		for _, lle := range lles {
			for _, lb := range lle.GetLbEndpoints() {
				total++
				if envoyHealthy(lb.GetHealthStatus()) {
					healthy++
				}
			}
		}
		return healthy, total
	}
	health := make([]float64, len(levels))
	sum := 0.0
	for i, l := range levels {
		if h, n := count(l); n > 0 {
			health[i] = min(100, factor*h/n)
		}
		sum += health[i]
	}
	out := envoyLoad{Priority: make([]float64, len(levels)), Host: map[string]float64{}}
	normalized := min(100, sum)
	if normalized == 0 {
		return out // no healthy host anywhere (and panic mode off): every request fails
	}
	left := 100.0
	for i := range levels {
		load := min(left, health[i]*100/normalized)
		left -= load
		out.Priority[i] = load / 100
	}
	for i, l := range levels {
		if out.Priority[i] == 0 {
			continue
		}
		h, n := count(l)
		panicked := normalized < 100 && 100*h/n < panicAt
		if panicked {
			out.Panic = append(out.Panic, i)
		}
		usable := func(lb *endpoint.LbEndpoint) bool { return panicked || envoyHealthy(lb.GetHealthStatus()) }
		spread := func(lles []*endpoint.LocalityLbEndpoints, share float64) {
			total := 0.0
			for _, lle := range lles {
				for _, lb := range lle.GetLbEndpoints() {
					if usable(lb) {
						total += float64(lb.GetLoadBalancingWeight().GetValue())
					}
				}
			}
			for _, lle := range lles {
				for _, lb := range lle.GetLbEndpoints() {
					if usable(lb) && total > 0 {
						out.Host[hostKey(lb)] += share * float64(lb.GetLoadBalancingWeight().GetValue()) / total
					}
				}
			}
		}
		if !weighted {
			spread(l, out.Priority[i])
			continue
		}
		eff := make([]float64, len(l))
		effSum := 0.0
		for j, lle := range l {
			lh, ln := count([]*endpoint.LocalityLbEndpoints{lle})
			avail := 100.0
			if !panicked {
				avail = min(100, factor*lh/ln)
			}
			eff[j] = float64(lle.GetLoadBalancingWeight().GetValue()) * avail
			effSum += eff[j]
		}
		for j, lle := range l {
			if effSum > 0 {
				spread([]*endpoint.LocalityLbEndpoints{lle}, out.Priority[i]*eff[j]/effSum)
			}
		}
	}
	return out
}

// byLocality sums host shares per region/zone of the assignment.
func (l envoyLoad) byLocality(cla *endpoint.ClusterLoadAssignment) map[string]float64 {
	out := map[string]float64{}
	for _, lle := range cla.GetEndpoints() {
		loc := lle.GetLocality().GetRegion() + "/" + lle.GetLocality().GetZone()
		for _, lb := range lle.GetLbEndpoints() {
			out[loc] += l.Host[hostKey(lb)]
		}
	}
	return out
}

// renderCase renders a sidecar of cluster in the ClusterSet file, with an
// optional policy file, and returns the Envoy cluster and assignment of a
// demo service's clusterset.local port 8080.
func renderCase(t *testing.T, csPath, policyPath, clusterName, service string) (*Resources, *cluster.Cluster, *endpoint.ClusterLoadAssignment) {
	t.Helper()
	cs := fixture.ClusterSet(t, csPath)
	var policy Policy
	if policyPath != "" {
		policy.File = fixture.Policy(t, policyPath, cs)
	}
	p := &Proxy{ID: "p", Role: Sidecar, Cluster: clusterName}
	if err := p.Resolve(cs); err != nil {
		t.Fatal(err)
	}
	g := p.GroupFor(policy.LabelKeys())
	res, err := Translate(cs, g, policy)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(res, cs, g); err != nil {
		t.Fatal(err)
	}
	name := discovery.ClusterName(discovery.Host(discovery.ServiceKey{Namespace: "demo", Name: service}, discovery.ClusterSetWide), 8080)
	c, cla := clusterAndAssignment(t, res, name)
	return res, c, cla
}

func clusterAndAssignment(t *testing.T, res *Resources, name string) (*cluster.Cluster, *endpoint.ClusterLoadAssignment) {
	t.Helper()
	var c *cluster.Cluster
	var cla *endpoint.ClusterLoadAssignment
	for _, x := range res.Clusters {
		if x.GetName() == name {
			c = x
		}
	}
	for _, x := range res.Endpoints {
		if x.GetClusterName() == name {
			cla = x
		}
	}
	if c == nil || cla == nil {
		t.Fatalf("no cluster or assignment %q", name)
	}
	return c, cla
}

func near(got, want float64) bool { return math.Abs(got-want) < 0.005 }

// A distribute rule's 75/25 between two zones with one host each must reach
// Envoy as 75/25, not the 50/50 of host weights: the cluster has to enable
// locality weighted load balancing.
func TestEnvoyHonoursDistributeWeights(t *testing.T) {
	_, c, cla := renderCase(t, "testdata/envoylb.yaml", "testdata/policy/distribute-75-25.yaml", "a-1", "echo")
	got := envoyBalance(c, cla).byLocality(cla)
	if !near(got["us-east/us-east-1a"], 0.75) || !near(got["us-east/us-east-1b"], 0.25) {
		t.Errorf("Envoy would split echo %v, want us-east-1a 0.75 and us-east-1b 0.25 (cluster common_lb_config %v)", got, c.GetCommonLbConfig())
	}
}

// One ready endpoint of 30 in the proxy's zone: Envoy must keep priority 0
// at 140 × 1/30 ≈ 4.7 % of the load and send the rest to the next zone, with
// or without a policy file, and whatever else a policy file holds.
func TestNotReadySpillsOverGradually(t *testing.T) {
	want := 1.4 / 30
	for _, policy := range []string{"", "testdata/policy/unrelated.yaml"} {
		_, c, cla := renderCase(t, "testdata/envoylb.yaml", policy, "a-1", "web")
		load := envoyBalance(c, cla)
		if len(load.Priority) != 2 || !near(load.Priority[0], want) || !near(load.Priority[1], 1-want) {
			t.Errorf("policy %q: priority load %v, want [%.4f %.4f]", policy, load.Priority, want, 1-want)
		}
		if got := load.Host["10.0.0.1:8080"]; !near(got, want) {
			t.Errorf("policy %q: the one ready pod takes %.4f of the load, want %.4f", policy, got, want)
		}
		for h, share := range load.Host {
			if strings.HasPrefix(h, "10.0.0.") && h != "10.0.0.1:8080" && share > 0 {
				t.Errorf("policy %q: not-ready %s takes %.4f of the load", policy, h, share)
			}
		}
	}
	// notReadyEndpoints: omit is the named way back to all-or-nothing.
	_, c, cla := renderCase(t, "testdata/envoylb.yaml", "testdata/policy/notready-omit.yaml", "a-1", "web")
	if load := envoyBalance(c, cla); !near(load.Priority[0], 1) || !near(load.Host["10.0.0.1:8080"], 1) {
		t.Errorf("notReadyEndpoints: omit: load %v, want everything on the one ready pod", load)
	}
}

// Not-ready endpoints in a priority that nothing else can relieve must get
// no traffic: with Envoy's default 50 % panic threshold, 4 ready of 10 would
// send requests to all 10.
func TestNotReadyNeverTakesTraffic(t *testing.T) {
	_, c, cla := renderCase(t, "testdata/envoylb.yaml", "", "a-1", "api")
	load := envoyBalance(c, cla)
	if len(load.Panic) > 0 {
		t.Errorf("levels %v in panic mode (cluster common_lb_config %v)", load.Panic, c.GetCommonLbConfig())
	}
	for i := 1; i <= 10; i++ {
		h := fmt.Sprintf("10.0.3.%d:8080", i)
		want := 0.0
		if i <= 4 {
			want = 0.25
		}
		if !near(load.Host[h], want) {
			t.Errorf("%s takes %.4f of the load, want %.2f", h, load.Host[h], want)
		}
	}
	// The model itself: Envoy's default threshold would panic here.
	c = proto.Clone(c).(*cluster.Cluster)
	if c.CommonLbConfig != nil {
		c.CommonLbConfig.HealthyPanicThreshold = nil
	}
	if load := envoyBalance(c, cla); len(load.Panic) != 1 || !near(load.Host["10.0.3.10:8080"], 0.1) {
		t.Errorf("with the default panic threshold: %v, want level 0 in panic and 10 %% on each host", load)
	}
}

// Every Envoy cluster of every golden case: in each priority, Envoy's split
// over localities (all hosts healthy) is the split of the locality weights
// the assignment carries, whatever the hosts' weights.
func TestGoldenLocalityWeightsReachEnvoy(t *testing.T) {
	cases, err := filepath.Glob("testdata/golden/*.in.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	checked := 0
	for _, in := range cases {
		cs, g, policy := loadCase(t, in)
		if g.Role == Proxyless {
			continue // gRPC weighs localities whatever the cluster says
		}
		res, err := Translate(cs, g, policy)
		if err != nil {
			t.Fatal(err)
		}
		for _, cla := range res.Endpoints {
			c, _ := clusterAndAssignment(t, res, cla.GetClusterName())
			all := proto.Clone(cla).(*endpoint.ClusterLoadAssignment)
			perLevel := map[uint32]float64{}
			for _, lle := range all.GetEndpoints() {
				perLevel[lle.GetPriority()] += float64(lle.GetLoadBalancingWeight().GetValue())
				for _, lb := range lle.GetLbEndpoints() {
					lb.HealthStatus = core.HealthStatus_HEALTHY
				}
			}
			load := envoyBalance(c, all)
			for _, lle := range all.GetEndpoints() {
				got := 0.0
				for _, lb := range lle.GetLbEndpoints() {
					got += load.Host[hostKey(lb)]
				}
				p := lle.GetPriority()
				want := load.Priority[p] * float64(lle.GetLoadBalancingWeight().GetValue()) / perLevel[p]
				if !near(got, want) {
					t.Errorf("%s: %s: Envoy sends locality %v %.4f of the load, its weight says %.4f", filepath.Base(in), cla.GetClusterName(), lle.GetLocality(), got, want)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no locality checked")
	}
}

// Check refuses a cluster that would make Envoy ignore its assignment's
// locality weights.
func TestCheckRequiresLocalityWeighting(t *testing.T) {
	res, c, _ := renderCase(t, "testdata/envoylb.yaml", "testdata/policy/distribute-75-25.yaml", "a-1", "echo")
	cs := fixture.ClusterSet(t, "testdata/envoylb.yaml")
	p := &Proxy{ID: "p", Role: Sidecar, Cluster: "a-1"}
	if err := p.Resolve(cs); err != nil {
		t.Fatal(err)
	}
	c.CommonLbConfig = nil
	err := Check(res, cs, p.Group())
	if err == nil || !strings.Contains(err.Error(), "locality_weighted_lb_config") {
		t.Fatalf("Check = %v, want a complaint about locality_weighted_lb_config", err)
	}
	// A single locality with a weight needs it as well: the weight is
	// explicit and Envoy would drop it silently.
	one := &endpoint.ClusterLoadAssignment{Endpoints: []*endpoint.LocalityLbEndpoints{{LoadBalancingWeight: nil}}}
	if why := localityWeightsMatter(one); why != "" {
		t.Errorf("one unweighted locality: %q, want nothing", why)
	}
	two := &endpoint.ClusterLoadAssignment{Endpoints: []*endpoint.LocalityLbEndpoints{{}, {}}}
	if why := localityWeightsMatter(two); !strings.Contains(why, "2 localities in priority 0") {
		t.Errorf("two localities in one priority: %q", why)
	}
	if slices.ContainsFunc(res.Clusters, func(x *cluster.Cluster) bool {
		return x.GetType() == cluster.Cluster_EDS && x != c && x.GetCommonLbConfig() == nil
	}) {
		t.Error("an EDS cluster without common_lb_config")
	}
}
