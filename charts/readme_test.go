package charts_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/charts"
)

// schemaLeaves are the dotted paths of the values the schema describes: a
// property with properties of its own is a table, any other one a value
// (free-form maps such as resources and nodeSelector included).
func schemaLeaves(prefix string, node map[string]any) []string {
	props, ok := node["properties"].(map[string]any)
	if !ok {
		return []string{strings.TrimSuffix(prefix, ".")}
	}
	var out []string
	for k, v := range props {
		out = append(out, schemaLeaves(prefix+k+".", v.(map[string]any))...)
	}
	return out
}

// TestValuesDocumented: the values table of README.md lists exactly the
// values of values.schema.json, and values.yaml gives each a default, so a
// value added to the chart without its row, or a row left for a value
// gone, fails.
func TestValuesDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	leaves := schemaLeaves("", schema)
	sort.Strings(leaves)
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n## Values\n")
	if !ok {
		t.Fatal(`README.md has no "## Values"`)
	}
	var rows []string
	for line := range strings.Lines(table) {
		if strings.HasPrefix(line, "## ") {
			break
		}
		if cells := strings.Split(line, "|"); len(cells) > 2 && strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			rows = append(rows, strings.Trim(strings.TrimSpace(cells[1]), "`"))
		}
	}
	sort.Strings(rows)
	if !slices.Equal(rows, leaves) {
		for _, l := range leaves {
			if !slices.Contains(rows, l) {
				t.Errorf("README.md's values table has no row for %s", l)
			}
		}
		for _, r := range rows {
			if !slices.Contains(leaves, r) {
				t.Errorf("README.md's values table lists %s, which values.schema.json does not have", r)
			}
		}
	}
	values, err := charts.ReadValues(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := renderCase{values: values}
	for _, l := range leaves {
		if c.value(l, nil) == nil {
			t.Errorf("values.yaml has no default for %s", l)
		}
	}
	if len(leaves) < 50 {
		t.Errorf("the schema describes %d values", len(leaves))
	}
}
