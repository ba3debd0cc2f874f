package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// Manifests is `horizon inject`: it reads the multi-document YAML in r
// (called name in errors), injects every pod and pod template (Pods,
// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs) for
// t, and writes all documents to w, other kinds unchanged. mode, when not
// empty, is the mode of pods whose template does not say one (it is
// written as their annotation). Errors name the document's file:line.
func Manifests(w io.Writer, r io.Reader, name string, c Config, t Target, mode string) error {
	dec := yaml.NewDecoder(r)
	first := true
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind == 0 {
			continue // an empty document
		}
		line := doc.Content[0].Line
		out, err := injectDocument(&doc, c, t, mode)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if !first {
			io.WriteString(w, "---\n")
		}
		first = false
		if _, err := w.Write(out); err != nil {
			return err
		}
	}
}

// injectDocument is one document, injected if it holds pods.
func injectDocument(doc *yaml.Node, c Config, t Target, mode string) ([]byte, error) {
	passThrough := func() ([]byte, error) {
		var b bytes.Buffer
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		if err := enc.Encode(doc); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	raw, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var tm metav1.TypeMeta
	if err := sigsyaml.Unmarshal(raw, &tm); err != nil {
		return nil, err
	}
	var obj any
	var meta *metav1.ObjectMeta
	var tmpl *corev1.PodTemplateSpec
	var pod *corev1.Pod
	switch gk := tm.GroupVersionKind(); {
	case gk.Group == "" && gk.Kind == "Pod":
		pod = &corev1.Pod{}
		obj = pod
	case gk.Group == "apps" && gk.Kind == "Deployment":
		o := &appsv1.Deployment{}
		obj, meta, tmpl = o, &o.ObjectMeta, &o.Spec.Template
	case gk.Group == "apps" && gk.Kind == "StatefulSet":
		o := &appsv1.StatefulSet{}
		obj, meta, tmpl = o, &o.ObjectMeta, &o.Spec.Template
	case gk.Group == "apps" && gk.Kind == "DaemonSet":
		o := &appsv1.DaemonSet{}
		obj, meta, tmpl = o, &o.ObjectMeta, &o.Spec.Template
	case gk.Group == "apps" && gk.Kind == "ReplicaSet":
		o := &appsv1.ReplicaSet{}
		obj, meta, tmpl = o, &o.ObjectMeta, &o.Spec.Template
	case gk.Group == "batch" && gk.Kind == "Job":
		o := &batchv1.Job{}
		obj, meta, tmpl = o, &o.ObjectMeta, &o.Spec.Template
	case gk.Group == "batch" && gk.Kind == "CronJob":
		o := &batchv1.CronJob{}
		obj, meta, tmpl = o, &o.ObjectMeta, &o.Spec.JobTemplate.Spec.Template
	default:
		return passThrough()
	}
	if err := sigsyaml.UnmarshalStrict(raw, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if pod == nil {
		pod = &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
		pod.Namespace = meta.Namespace
		if pod.Name == "" && pod.GenerateName == "" {
			pod.GenerateName = meta.Name + "-"
		}
	}
	if mode != "" && pod.Annotations[AnnotationMode] == "" && pod.Labels[LabelInject] != "false" {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[AnnotationMode] = mode
	}
	injected, err := Pod(c, t, pod)
	var skip Skip
	switch {
	case errors.As(err, &skip):
		return passThrough()
	case err != nil:
		return nil, fmt.Errorf("%s %s: %w", tm.Kind, objectName(meta, pod), err)
	}
	if tmpl != nil {
		name, ns, gen := tmpl.Name, tmpl.Namespace, tmpl.GenerateName
		tmpl.ObjectMeta, tmpl.Spec = injected.ObjectMeta, injected.Spec
		tmpl.Name, tmpl.Namespace, tmpl.GenerateName = name, ns, gen
	} else {
		*pod = *injected
	}
	return marshalClean(obj)
}

func objectName(meta *metav1.ObjectMeta, pod *corev1.Pod) string {
	if meta != nil {
		return meta.Name
	}
	return pod.Name
}

// marshalClean is obj in YAML without the empty status and
// creationTimestamp the typed structs add.
func marshalClean(obj any) ([]byte, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	clean(m)
	return sigsyaml.Marshal(m)
}

// clean drops creationTimestamp: null and empty resources: {} everywhere.
func clean(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k == "creationTimestamp" && x == nil {
				delete(v, k)
				continue
			}
			if k == "resources" {
				if r, ok := x.(map[string]any); ok && len(r) == 0 {
					delete(v, k)
					continue
				}
			}
			clean(x)
		}
	case []any:
		for _, x := range v {
			clean(x)
		}
	}
}
