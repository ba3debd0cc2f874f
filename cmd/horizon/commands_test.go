package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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

// commandPaths is every command of the tree, each as its arguments
// (["ca", "init"]), the root as [].
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	var paths [][]string
	visit(newRootCommand(io.Discard, io.Discard), func(c *cobra.Command) {
		paths = append(paths, commandArgs(c))
	})
	if len(paths) < 15 {
		t.Fatalf("only %d commands in the tree", len(paths))
	}
	return paths
}

// commandArgs is c's path as arguments: horizon ca init → [ca init].
func commandArgs(c *cobra.Command) []string {
	return strings.Fields(c.CommandPath())[1:]
}

// parse parses args as run would, without running the command: the command
// they name and its flags afterwards.
func parse(t *testing.T, args []string) (*cobra.Command, *pflag.FlagSet) {
	t.Helper()
	root := newRootCommand(io.Discard, io.Discard)
	cmd, rest, err := root.Find(goStyleFlags(root, args))
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if a := cmd.Flags().Args(); len(a) > 0 {
		t.Fatalf("%q: arguments %q left over", args, a)
	}
	return cmd, cmd.Flags()
}

// sampleValue is a value for a flag of type typ, unlike any default; where
// the type allows, it starts with a dash, so that it only parses as the
// flag's value if the value is taken as given.
func sampleValue(t *testing.T, f *pflag.Flag) string {
	switch f.Value.Type() {
	case "string", "stringArray":
		return "-sample"
	case "duration":
		return "-3m7s"
	case "int", "int64":
		return "-7"
	case "uint64", "uint32", "uint16":
		return "7"
	case "float64":
		return "-7.5"
	case "key=value":
		return "tier=web"
	case "member":
		return "name=east,network=net-east,kubeconfig=/etc/east.yaml"
	}
	t.Fatalf("--%s: a flag of type %s: give it a sample value here", f.Name, f.Value.Type())
	return ""
}

// TestEveryFlagBothSpellings: every flag of every command, in the tree as
// it is, parses to the same value written -name value, --name value,
// -name=value and --name=value (a boolean: -name, --name, and =false or
// =true against its default). Go's flag package took them all, and scripts
// and manifests use them.
func TestEveryFlagBothSpellings(t *testing.T) {
	flags := 0
	for _, path := range commandPaths(t) {
		cmd, fs := parse(t, path)
		if strings.Join(commandArgs(cmd), " ") != strings.Join(path, " ") {
			t.Fatalf("%q finds %q", path, cmd.CommandPath())
		}
		fs.VisitAll(func(f *pflag.Flag) {
			flags++
			var spellings [][]string
			want := ""
			if f.Value.Type() == "bool" {
				flip := fmt.Sprint(f.DefValue != "true")
				spellings = [][]string{{"-" + f.Name + "=" + flip}, {"--" + f.Name + "=" + flip}}
				if flip == "true" {
					spellings = append(spellings, []string{"-" + f.Name}, []string{"--" + f.Name})
				}
				want = flip
			} else {
				v := sampleValue(t, f)
				spellings = [][]string{{"-" + f.Name, v}, {"--" + f.Name, v}, {"-" + f.Name + "=" + v}, {"--" + f.Name + "=" + v}}
			}
			for _, s := range spellings {
				args := append(slices.Clone(path), s...)
				_, got := parse(t, args)
				g := got.Lookup(f.Name)
				if !g.Changed {
					t.Errorf("horizon %s: --%s not set", strings.Join(args, " "), f.Name)
					continue
				}
				if want == "" {
					want = g.Value.String()
				}
				if g.Value.String() != want || want == f.DefValue {
					t.Errorf("horizon %s: --%s is %q, want %q (default %q)", strings.Join(args, " "), f.Name, g.Value.String(), want, f.DefValue)
				}
			}
		})
	}
	t.Logf("%d flags", flags)
}

// TestRepeatableFlags: --label and --member collect every occurrence, in
// either spelling.
func TestRepeatableFlags(t *testing.T) {
	for _, path := range [][]string{{"bootstrap"}, {"view"}, {"explain", "failover"}} {
		_, fs := parse(t, append(slices.Clone(path), "-label", "a=1", "--label", "b=2", "-label=c=3", "--label=d=4", "-label", "a=5"))
		if got := fs.Lookup("label").Value.String(); got != "a=5,b=2,c=3,d=4" {
			t.Errorf("%s: labels %s", path, got)
		}
	}
	_, fs := parse(t, []string{"serve", "-member", "name=east,network=e,kubeconfig=/e", "--member=name=west,network=w,kubeconfig=/w"})
	if got := fs.Lookup("member").Value.String(); got != "east,west" {
		t.Errorf("members %s", got)
	}
}

func TestGoStyleFlags(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"serve -clusterset f.yaml -plaintext-remote", "serve --clusterset f.yaml --plaintext-remote"},
		{"serve -clusterset=f.yaml -plaintext-remote=false", "serve --clusterset=f.yaml --plaintext-remote=false"},
		{"ca issue -ttl -1h -id -out", "ca issue --ttl -1h --id -out"}, // values stay as given
		{"bootstrap -cluster -h", "bootstrap --cluster -h"},
		{"bootstrap -h", "bootstrap -h"},        // a shorthand
		{"bootstrap -help", "bootstrap --help"}, // Go's flag package took -help too
		{"serve -bogus", "serve --bogus"},       // unknown: "unknown flag: --bogus"
		{"serve -x", "serve -x"},                // unknown letter: a shorthand
		{"serve -- -clusterset", "serve -- -clusterset"},
		{"-cluster bootstrap", "--cluster bootstrap"}, // not a flag of horizon itself: "unknown flag: --cluster"
		{"explain failover -from us -service s", "explain failover --from us --service s"},
		{"__complete serve -clusterset x -cl", "__complete serve --clusterset x -cl"}, // the word being completed stays
	} {
		if got := strings.Join(goStyleFlags(newRootCommand(io.Discard, io.Discard), strings.Fields(tc.args)), " "); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.args, got, tc.want)
		}
	}
	if got := goStyleFlags(newRootCommand(io.Discard, io.Discard), nil); got == nil {
		t.Error("nil for no arguments: cobra would read os.Args")
	}
}

// TestHelp: every command prints its help on stdout and succeeds, asked
// with -h, -help, --help or help <command>; the root and every group alone
// print theirs too.
func TestHelp(t *testing.T) {
	for _, path := range commandPaths(t) {
		cmd, _ := parse(t, path)
		asks := [][]string{append(slices.Clone(path), "-h"), append(slices.Clone(path), "-help"), append(slices.Clone(path), "--help")}
		if len(path) > 0 {
			asks = append(asks, append([]string{"help"}, path...))
		}
		if len(path) == 0 || cmd.HasSubCommands() {
			asks = append(asks, path)
		}
		for _, args := range asks {
			var out, errb bytes.Buffer
			err := run(t.Context(), args, &out, &errb)
			if code := report(io.Discard, err); code != 0 || errb.Len() > 0 {
				t.Errorf("horizon %s: exit %d, %v, stderr %q", strings.Join(args, " "), code, err, errb.String())
			}
			if !strings.Contains(out.String(), "Usage:\n  "+cmd.CommandPath()) {
				t.Errorf("horizon %s: not the help of %s:\n%s", strings.Join(args, " "), cmd.CommandPath(), out.String())
			}
		}
	}
}

// TestExitCodes: a command line horizon cannot run exits 2 and says why
// and where to read; a command that fails exits 1.
func TestExitCodes(t *testing.T) {
	type tc struct {
		args string
		code int
		want string
	}
	cases := []tc{
		{"serv", 2, `unknown command "serv" for "horizon"`},
		{"-bogus", 2, "unknown flag: --bogus"},
		{"bootstrap", 2, "bootstrap: --cluster is required\nRun 'horizon bootstrap --help' for usage."},
		{"ca init", 2, "ca init: --trust-domain and --out are required"},
		{"bootstrap --cluster c --admin-port x", 2, `bootstrap: invalid argument "x" for "--admin-port" flag`},
		{"bootstrap --cluster", 2, "bootstrap: flag needs an argument: --cluster"},
		{"view --cluster nowhere", 1, "nowhere"},
		{"bootstrap --cluster c --role router", 1, `bootstrap: --role "router": want sidecar, gateway or proxyless`},
	}
	for _, path := range commandPaths(t) {
		cmd, _ := parse(t, path)
		p := strings.Join(path, " ")
		cases = append(cases, tc{p + " --bogus", 2, "unknown flag: --bogus\nRun '" + cmd.CommandPath() + " --help' for usage."})
		cases = append(cases, tc{p + " -bogus", 2, "unknown flag: --bogus"})
		switch {
		case len(path) == 0:
		case cmd.HasSubCommands():
			cases = append(cases, tc{p + " nope", 2, `unknown command "nope" for "` + cmd.CommandPath() + `"`})
		case cmd.Name() != "help":
			cases = append(cases, tc{p + " extra", 2, `"extra"`}) // cobra's completion: unknown command "extra"
		}
	}
	for _, c := range cases {
		var out, errb, msg bytes.Buffer
		code := report(&msg, run(t.Context(), strings.Fields(c.args), &out, &errb))
		if code != c.code || !strings.Contains(msg.String(), c.want) {
			t.Errorf("horizon %s: exit %d, %q; want %d, %q", c.args, code, msg.String(), c.code, c.want)
		}
	}
}

// TestFlagValueNames: no flag's help text holds a backquoted word, which
// pflag (like Go's flag package) would take for the value's name
// ("--svid-provider horizon agent"): each flag's value is named by its type,
// as the help shows it.
func TestFlagValueNames(t *testing.T) {
	valueName := regexp.MustCompile(`^[a-z0-9=]*$`)
	flagLine := regexp.MustCompile(`^(?:  -\w, |      )--([\w-]+)(?: (\S+))?(?:\s{2,}|$)`) // not a wrapped line
	for _, path := range commandPaths(t) {
		cmd, fs := parse(t, path)
		fs.VisitAll(func(f *pflag.Flag) {
			name, _ := pflag.UnquoteUsage(f)
			if strings.Contains(f.Usage, "`") || !valueName.MatchString(name) {
				t.Errorf("%s --%s: value name %q from the help text %q", cmd.CommandPath(), f.Name, name, f.Usage)
			}
		})
		var out bytes.Buffer
		if err := run(t.Context(), append(slices.Clone(path), "--help"), &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		lines := 0
		for _, line := range strings.Split(out.String(), "\n") {
			if m := flagLine.FindStringSubmatch(line); m != nil {
				lines++
				if !valueName.MatchString(m[2]) {
					t.Errorf("%s --help: --%s takes a %q:\n%s", cmd.CommandPath(), m[1], m[2], line)
				}
			}
		}
		if want := len(cmd.LocalNonPersistentFlags().FlagUsages()) > 0; want && lines == 0 {
			t.Errorf("%s --help: no flags found in\n%s", cmd.CommandPath(), out.String())
		}
	}
}

// TestOldFlagNames: a flag renamed so that two commands name one thing
// alike keeps its old name, hidden, for the same value.
func TestOldFlagNames(t *testing.T) {
	for _, tc := range []struct {
		path           []string
		old, canonical string
		value          string
	}{
		{[]string{"agent"}, "address", "mtls-address", "horizon:15012"},
		{[]string{"agent"}, "server-id", "xds-server-id", "spiffe://cluster.local/ns/horizon-system/sa/horizon"},
		{[]string{"agent"}, "out", "cert-dir", "/var/certs"},
	} {
		for _, spelling := range []string{"-", "--"} {
			_, fs := parse(t, append(slices.Clone(tc.path), spelling+tc.old, tc.value))
			if got := fs.Lookup(tc.canonical).Value.String(); got != tc.value {
				t.Errorf("%s %s%s %s: --%s is %q", tc.path, spelling, tc.old, tc.value, tc.canonical, got)
			}
		}
	}
	// Every hidden flag is such an old name.
	for _, path := range commandPaths(t) {
		cmd, fs := parse(t, path)
		fs.VisitAll(func(f *pflag.Flag) {
			if !f.Hidden {
				return
			}
			shared := false
			fs.VisitAll(func(g *pflag.Flag) { shared = shared || (!g.Hidden && g.Value == f.Value) })
			if !shared {
				t.Errorf("%s: hidden flag --%s is no old name of a flag", cmd.CommandPath(), f.Name)
			}
		})
	}
}

// TestREADMECommandTable: README's table of commands names every command
// of the tree, with its one-line description, and no other. A group's
// commands are listed one by one (horizon ca init, ...), except completion's
// one per shell.
func TestREADMECommandTable(t *testing.T) {
	want := map[string]string{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			switch {
			case sub.Hidden || sub.Name() == "help":
			case sub.HasSubCommands() && sub.Name() != "completion":
				walk(sub)
			default:
				want[sub.CommandPath()] = sub.Short
			}
		}
	}
	walk(newRootCommand(io.Discard, io.Discard))

	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(data), "\n| command | what it does |\n|---|---|\n")
	if !ok {
		t.Fatal("README.md has no table | command | what it does |")
	}
	row := regexp.MustCompile("^\\| `([^`]+)` \\| (.*) \\|$")
	got := map[string]string{}
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("README.md: command table row %q is not | `horizon <command>` | <description> |", line)
			continue
		}
		got[m[1]] = m[2]
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if got[name] != want[name] {
			t.Errorf("README.md's command table: want the row\n| `%s` | %s |\ngot description %q", name, want[name], got[name])
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("README.md's command table lists %q, which is no command of horizon", name)
		}
	}
}

// TestCompletion: the shells' scripts, and what they ask horizon for: a
// command's flags, a flag's values, with the flag in either spelling.
func TestCompletion(t *testing.T) {
	complete := func(args ...string) string {
		var out bytes.Buffer
		if err := run(t.Context(), append([]string{"__complete"}, args...), &out, io.Discard); err != nil {
			t.Fatalf("complete %q: %v", args, err)
		}
		return out.String()
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{""}, []string{"serve", "bootstrap", "ca", "completion"}},
		{[]string{"ca", ""}, []string{"init", "intermediate", "issue"}},
		{[]string{"view", "--"}, []string{"--clusterset", "--output"}},
		{[]string{"view", "--output", ""}, []string{"text", "json", "yaml"}},
		{[]string{"view", "-output", ""}, []string{"text", "json", "yaml"}},
		{[]string{"bootstrap", "--role", ""}, []string{"sidecar", "gateway", "proxyless"}},
		{[]string{"gateway", "--log-format", ""}, []string{"text", "json"}},
	} {
		got := complete(tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(got, w+"\n") && !strings.Contains(got, w+"\t") {
				t.Errorf("complete %q: no %s in\n%s", tc.args, w, got)
			}
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), []string{"completion", shell}, &out, &errb); err != nil || !strings.Contains(out.String(), "horizon") || errb.Len() > 0 {
			t.Errorf("completion %s: %v, %d bytes, stderr %q", shell, err, out.Len(), errb.String())
		}
	}
}
