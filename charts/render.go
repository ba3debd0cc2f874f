// Package charts renders Horizon's Helm chart (charts/horizon) with Helm's Go
// SDK, as `helm template` does: the values files merged over values.yaml,
// checked against values.schema.json, every template rendered. The chart's
// tests apply what it renders to a real kube-apiserver, and `make examples`
// writes examples/kubernetes from it (Examples).
package charts

import (
	"fmt"
	"path"
	"sort"
	"strings"

	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
)

// ReleaseName is the release every render uses; the chart's object names do
// not depend on it (see templates/_helpers.tpl).
const ReleaseName = "horizon"

// Release is one render of the chart.
type Release struct {
	// Files are the rendered manifests by template path
	// ("templates/deployment.yaml"); templates that render to nothing but
	// comments and blanks are left out.
	Files map[string]string
	// Notes is templates/NOTES.txt rendered.
	Notes string
	// CRDs are the chart's crds/ files by path ("crds/x.yaml"), which Helm
	// installs before the templates and never templates.
	CRDs map[string][]byte
}

// Names are the template paths of r.Files, sorted.
func (r *Release) Names() []string {
	var names []string
	for name := range r.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// ReadValues merges values files in order, later ones winning, as
// `helm install -f a.yaml -f b.yaml` does.
func ReadValues(files ...string) (map[string]any, error) {
	merged := map[string]any{}
	for _, f := range files {
		v, err := chartcommon.ReadValuesFile(f)
		if err != nil {
			return nil, fmt.Errorf("values %s: %w", f, err)
		}
		merged = loader.MergeMaps(merged, v)
	}
	return merged, nil
}

// Render renders the chart in dir into namespace with values merged over
// the chart's values.yaml. Values the schema refuses, and templates that
// fail (a `fail` naming the value), are errors.
func Render(dir, namespace string, values map[string]any) (*Release, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	return render(ch, namespace, values)
}

func render(ch *chart.Chart, namespace string, values map[string]any) (*Release, error) {
	opts := chartcommon.ReleaseOptions{Name: ReleaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, values, opts, chartcommon.DefaultCapabilities, false)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, top)
	if err != nil {
		return nil, err
	}
	r := &Release{Files: map[string]string{}, CRDs: map[string][]byte{}}
	prefix := ch.Name() + "/"
	for name, text := range out {
		name = strings.TrimPrefix(name, prefix)
		switch {
		case path.Base(name) == "NOTES.txt":
			r.Notes = text
		case strings.HasPrefix(path.Base(name), "_"):
		case blank(text):
		default:
			r.Files[name] = text
		}
	}
	for _, f := range ch.CRDs() {
		r.CRDs[f.Name] = f.Data
	}
	return r, nil
}

// blank: only comments and white space (and document separators).
func blank(text string) bool {
	for line := range strings.Lines(text) {
		if l := strings.TrimSpace(line); l != "" && l != "---" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}
