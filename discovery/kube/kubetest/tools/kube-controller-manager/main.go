// Command kube-controller-manager is the upstream controller manager, built
// from its Go module for Horizon's node end-to-end tests, which run only the
// controllers a mesh relies on (EndpointSlices, ServiceAccounts).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
