// Command kubelet is the upstream node agent, built from its Go module for
// Horizon's node tests (internal/nodetest starts one per simulated node).
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
