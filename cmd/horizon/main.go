// Command horizon is Horizon's single binary: the xDS control plane (serve),
// the gateway and the agent beside it, and the tools around them (bootstrap,
// view, explain, cluster, ca). commands.go defines the command line; each
// command runs from its own file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(report(os.Stderr, err))
}

// run runs the command line args (without the program name) on a fresh
// command tree. Its error is a *usageError or a *runError.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(goStyleFlags(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	var runErr *runError
	var usageErr *usageError
	if err != nil && !errors.As(err, &runErr) && !errors.As(err, &usageErr) {
		// Every error cobra makes itself (an unknown command) is about usage.
		err = &usageError{cmd: cmd, err: err}
	}
	return err
}

// report writes err, if any, to stderr and returns the exit code: 0 for none
// (help is none), 2 for a usage error, 1 for a command that failed.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "horizon:", strings.TrimRight(err.Error(), "\n"))
	var u *usageError
	if errors.As(err, &u) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", u.cmd.CommandPath())
		return 2
	}
	return 1
}

// usageError is a command line horizon cannot run: an unknown command or
// flag, a flag value of the wrong type, a required flag missing, an
// argument no command takes. It exits 2.
type usageError struct {
	cmd *cobra.Command // the command whose help to read
	err error
}

// usagef is a usage error of cmd, its message prefixed with the command
// ("ca init: --out is required").
func usagef(cmd *cobra.Command, format string, a ...any) *usageError {
	err := fmt.Errorf(format, a...)
	if cmd.HasParent() {
		err = fmt.Errorf("%s: %w", strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" "), err)
	}
	return &usageError{cmd: cmd, err: err}
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// runError is a command that ran and failed. It exits 1.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// asRunError is err as a runError, unless it is a usage error.
func asRunError(err error) error {
	var u *usageError
	if errors.As(err, &u) {
		return err
	}
	return &runError{err: err}
}
