// Command coredns is upstream CoreDNS, built from its Go module for Horizon's
// DNS tests with only the plugins those tests use: bind (loopback only),
// errors, log and kubernetes
// (whose multicluster option serves clusterset.local from ServiceImports and
// MCS EndpointSlices). No forward, no cache: every answer comes from the
// apiserver the test points it at.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
)

// directives is the plugin chain order, a subset of CoreDNS's plugin.cfg.
var directives = []string{
	"bind",
	"errors",
	"log",
	"kubernetes",
}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
