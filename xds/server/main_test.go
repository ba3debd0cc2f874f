package server

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// The package's tests run against one engine: -engine picks it (go test
// ./xds/server -args -engine=go-control-plane), EngineHorizon by default.
// Every protocol test must pass under both while both exist.
var engineFlag = flag.String("engine", string(EngineHorizon), "the ADS engine the tests run against: horizon or go-control-plane")

func TestMain(m *testing.M) {
	flag.Parse()
	switch e := Engine(*engineFlag); e {
	case EngineHorizon, EngineGoControlPlane:
		defaultEngine = e
	default:
		fmt.Fprintf(os.Stderr, "-engine %q: want horizon or go-control-plane\n", *engineFlag)
		os.Exit(2)
	}
	os.Exit(m.Run())
}
