// Command horizon is Horizon's single binary: the xDS control plane (serve)
// and the tools around it (bootstrap).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `horizon: an xDS control plane for multi-cluster meshes with split-horizon EDS.

Usage:
  horizon serve [flags]        serve xDS for a ClusterSet (default: the embedded local example)
  horizon bootstrap [flags]    print a proxy bootstrap (Envoy sidecar/gateway, or grpc-go proxyless)
  horizon view [flags]         print the endpoints a proxy would get, as the server renders them, without a server
  horizon explain failover     for a source locality, each priority level of a service and why each endpoint is there
  horizon cluster add-secret   give Horizon least-privilege access to a member cluster; print its Secret
  horizon ca <command>         the SPIFFE trust root: init, intermediate (per member cluster), issue (test SVIDs)
  horizon agent [flags]        keep a workload's SVID current in files Envoy and grpc-go read
  horizon gateway [flags]      an east-west gateway: SNI passthrough to its network's pods, configured over xDS
  horizon version              the build: version, commit, Go version

Run 'horizon <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "horizon:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "bootstrap":
		return bootstrapCommand(args[1:], stdout, stderr)
	case "view":
		return view(args[1:], stdout, stderr)
	case "explain":
		return explain(args[1:], stdout, stderr)
	case "cluster":
		return cluster(ctx, args[1:], stdout, stderr)
	case "ca":
		return caCommand(args[1:], stdout, stderr)
	case "agent":
		return agentCommand(ctx, args[1:], stdout, stderr)
	case "gateway":
		return gatewayCommand(ctx, args[1:], stdout, stderr)
	case "version":
		printVersion(stdout)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
