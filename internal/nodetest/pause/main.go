// Command pause is the sandbox ("pause") container of internal/nodetest's
// nodes: it holds a pod's namespaces and waits for SIGTERM or SIGINT. Built
// static and put in an image by nodetest, as there is no registry to pull
// the upstream one from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
