package charts_test

import (
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// TestHelmLint: Helm's own linter (`helm lint`) finds no warning or error
// in the chart with any ci/ values file. (Its one info, "icon is
// recommended", stays: Horizon has no icon.)
func TestHelmLint(t *testing.T) {
	for _, c := range renderCases(t) {
		l := lint.RunAll(chartDir, c.values, namespace)
		for _, m := range l.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("%s: %v", c.name, m)
			}
		}
	}
}
