// Package local holds the example local ClusterSet: the file users copy and
// edit, and the default that `make run` serves without Kubernetes.
package local

import _ "embed"

// Name is the example file's path in the repository, for error messages.
const Name = "examples/local/clusterset.yaml"

// ClusterSet is the content of clusterset.yaml, in the format that
// discovery/file parses.
//
//go:embed clusterset.yaml
var ClusterSet []byte
