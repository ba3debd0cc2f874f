package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// goStyleFlags rewrites the Go-style flags of a command line into the ones
// pflag parses. Horizon's command line was Go's flag package before cobra,
// and scripts and manifests write -name and -name=value; pflag reads a
// single dash as shorthand letters (-name is -n -a -m -e). So an argument
// -name or -name=value whose name is a long flag of the command it is given
// to becomes --name or --name=value; so does an unknown -name of more than
// one letter, so that the error says "unknown flag: --name". Shorthands
// (-h) stay. A flag's value given as the next argument (--ttl -1h), and
// everything after "--", are left as they are.
func goStyleFlags(root *cobra.Command, args []string) []string {
	out := make([]string, 0, len(args)) // never nil: nil would make cobra read os.Args
	last := len(args)
	if len(args) > 0 && strings.HasPrefix(args[0], cobra.ShellCompRequestCmd) {
		last-- // shell completion: the word being completed is the user's as typed
	}
	cmd := root
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case i == last:
		case len(a) < 2 || a[0] != '-':
			if sub := subcommand(cmd, a); sub != nil {
				cmd = sub
			}
		case a[1] != '-':
			name, _, _ := strings.Cut(a[1:], "=")
			if isLong(cmd, name) {
				a = "-" + a
			}
		}
		out = append(out, a)
		if i != last && i+1 < len(args) && takesNextArg(cmd, a) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// isLong says whether -name means the long flag --name.
func isLong(cmd *cobra.Command, name string) bool {
	if len(name) == 1 {
		return lookupFlag(cmd, name) != nil && shorthand(cmd, name) == nil
	}
	return name != ""
}

// takesNextArg says whether the flag argument a (--name, -x) takes its
// value from the next argument.
func takesNextArg(cmd *cobra.Command, a string) bool {
	var f *pflag.Flag
	switch {
	case strings.HasPrefix(a, "--"):
		if strings.Contains(a, "=") {
			return false
		}
		f = lookupFlag(cmd, a[2:])
	case len(a) == 2 && a[0] == '-':
		f = shorthand(cmd, a[1:])
	}
	return f != nil && f.NoOptDefVal == ""
}

func lookupFlag(cmd *cobra.Command, name string) *pflag.Flag {
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	return cmd.InheritedFlags().Lookup(name)
}

func shorthand(cmd *cobra.Command, letter string) *pflag.Flag {
	if f := cmd.Flags().ShorthandLookup(letter); f != nil {
		return f
	}
	return cmd.InheritedFlags().ShorthandLookup(letter)
}

func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	return nil
}
