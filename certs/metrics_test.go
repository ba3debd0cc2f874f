package certs

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	p := newPKI(t, WithMetrics(m))
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.east.Issue(key.Public(), echoID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := p.west.Issue(key.Public(), echoID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := p.west.Issue(key.Public(), td.ID(), 0); err == nil {
		t.Fatal("issued the trust domain's ID")
	}

	unix := func(tm time.Time) float64 { return float64(tm.Unix()) }
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"root expiry", testutil.ToFloat64(m.expiry.WithLabelValues("root", "")), unix(t0.Add(DefaultRootTTL))},
		{"east expiry", testutil.ToFloat64(m.expiry.WithLabelValues("intermediate", "east")), unix(t0.Add(DefaultIntermediateTTL))},
		{"issued", testutil.ToFloat64(m.issuedN), 2},
		{"refused id", testutil.ToFloat64(m.refusals.WithLabelValues("id")), 1},
		{"refused trust domain", testutil.ToFloat64(m.refusals.WithLabelValues("trust_domain")), 0},
		// The latest expiry, not the last issued: the 24h SVID outlives the 1h one.
		{"svid expiry", testutil.ToFloat64(m.svidExpiry), unix(t0.Add(DefaultSVIDTTL))},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP horizon_certs_svid_lifetime_seconds Lifetime (NotAfter - issuance time) of the X509-SVIDs issued; shorter than asked when capped by a CA's expiry.
# TYPE horizon_certs_svid_lifetime_seconds histogram
horizon_certs_svid_lifetime_seconds_bucket{le="60"} 0
horizon_certs_svid_lifetime_seconds_bucket{le="300"} 0
horizon_certs_svid_lifetime_seconds_bucket{le="900"} 0
horizon_certs_svid_lifetime_seconds_bucket{le="3600"} 1
horizon_certs_svid_lifetime_seconds_bucket{le="14400"} 1
horizon_certs_svid_lifetime_seconds_bucket{le="43200"} 1
horizon_certs_svid_lifetime_seconds_bucket{le="86400"} 2
horizon_certs_svid_lifetime_seconds_bucket{le="172800"} 2
horizon_certs_svid_lifetime_seconds_bucket{le="604800"} 2
horizon_certs_svid_lifetime_seconds_bucket{le="+Inf"} 2
horizon_certs_svid_lifetime_seconds_sum 90000
horizon_certs_svid_lifetime_seconds_count 2
`), "horizon_certs_svid_lifetime_seconds"); err != nil {
		t.Error(err)
	}
	// Every refusal reason is a series from the start.
	if n := testutil.CollectAndCount(m.refusals); n != len(issueReasons) {
		t.Errorf("%d refusal series, want %d", n, len(issueReasons))
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	p := newPKI(t, WithMetrics(m))
	issue(t, p.east, echoID)
	m.refused(nil)
	NewMetrics(nil) // no registry: fine
}
