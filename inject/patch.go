package inject

import (
	"encoding/json"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// Patch is the JSON patch (RFC 6902) that turns pod into injected, as an
// admission response carries it.
func Patch(pod, injected *corev1.Pod) ([]byte, error) {
	a, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(injected)
	if err != nil {
		return nil, err
	}
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ops)
}
