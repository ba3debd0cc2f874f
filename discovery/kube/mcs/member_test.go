package mcs_test

import (
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
)

// The Kubernetes source's members are what the controller reads and writes.
var _ mcs.Member = (*kube.Member)(nil)
