package main

import (
	"context"
	"io"
)

// The commands as the tests call them: each a command line on a fresh
// command tree, as run gives it.

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, append([]string{"serve"}, args...), stdout, stderr)
}

func bootstrapCommand(args []string, stdout, stderr io.Writer) error {
	return run(context.Background(), append([]string{"bootstrap"}, args...), stdout, stderr)
}

func view(args []string, stdout, stderr io.Writer) error {
	return run(context.Background(), append([]string{"view"}, args...), stdout, stderr)
}

func explain(args []string, stdout, stderr io.Writer) error {
	return run(context.Background(), append([]string{"explain"}, args...), stdout, stderr)
}

func cluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, append([]string{"cluster"}, args...), stdout, stderr)
}

func caCommand(args []string, stdout, stderr io.Writer) error {
	return run(context.Background(), append([]string{"ca"}, args...), stdout, stderr)
}

func agentCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, append([]string{"agent"}, args...), stdout, stderr)
}

func gatewayCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, append([]string{"gateway"}, args...), stdout, stderr)
}
