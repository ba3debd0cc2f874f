package main

// The command definitions: every command of horizon, its flags, and the
// function it runs, which lives in the command's own file (serve.go runs
// serve, agent.go the agent, …). A flag here only fills a config; checking
// what the values mean is the run function's job, except that a required
// flag left empty is a usage error (exit 2) named here.

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
	"github.com/horizonmesh/horizon/discovery/workload"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/gateway/health"
	"github.com/horizonmesh/horizon/gateway/proxy/sni"
	"github.com/horizonmesh/horizon/inject"
	"github.com/horizonmesh/horizon/inject/capture"
	"github.com/horizonmesh/horizon/internal/connguard"
	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/bootstrap"
	"github.com/horizonmesh/horizon/xds/server"
)

// newRootCommand builds horizon's command tree, writing to stdout and
// stderr. run builds a fresh one for each command line.
func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "horizon",
		Short: "an xDS control plane for multi-cluster meshes with split-horizon EDS",
		Long: `horizon: an xDS control plane for multi-cluster meshes with split-horizon EDS.

Flags may be written -name or --name, with the value after '=' or as the
next argument.`,
		SilenceErrors: true, // main says it once, with the exit code
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usagef(cmd, "%w", err) })
	root.AddCommand(
		newServeCommand(),
		newBootstrapCommand(),
		newViewCommand(),
		newExplainCommand(),
		newClusterCommand(),
		newCACommand(),
		newAgentCommand(),
		newWorkloadCommand(),
		newCaptureCommand(),
		newInjectCommand(),
		newGatewayCommand(),
		newVersionCommand(),
	)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() { // cobra's own, in our words
		switch c.Name() {
		case "completion":
			c.Short = "print a shell completion script: bash, zsh, fish or powershell"
		case "help":
			c.Short = "print a command's help: 'horizon help serve' is 'horizon serve --help'"
		}
	}
	visit(root, func(c *cobra.Command) {
		c.InitDefaultHelpFlag() // so that -help is known before parsing
		if c.HasParent() && c.HasSubCommands() && !c.Runnable() {
			// A group (horizon ca): alone it prints its help, and an
			// unknown subcommand is an error (cobra checks that for the
			// root only).
			c.Args = unknownSubcommand
			c.SuggestionsMinimumDistance = 2
			c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		}
	})
	return root
}

// visit calls f for c and every command below it.
func visit(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, sub := range c.Commands() {
		visit(sub, f)
	}
}

// usageTemplate is cobra's, with the flags' help wrapped at 100 columns and
// a group (horizon ca) showing no usage line of its own.
const usageTemplate = `Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsagesWrapped 100 | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsagesWrapped 100 | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Run '{{.CommandPath}} <command> --help' for a command's flags.{{end}}
`

// noArgs refuses positional arguments: no command of horizon takes any.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(cmd, "unexpected arguments %q", args)
	}
	return nil
}

func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	// As cobra says it for the root.
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return &usageError{cmd: cmd, err: errors.New(msg)}
}

// runs is a command's RunE: f's errors are runtime errors (exit 1), unless
// f says they are usage errors.
func runs(f func(cmd *cobra.Command) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if err := f(cmd); err != nil {
			return asRunError(err)
		}
		return nil
	}
}

// requireFlags is a usage error naming the flags whose value is empty.
func requireFlags(cmd *cobra.Command, names ...string) error {
	var missing []string
	for _, name := range names {
		if cmd.Flags().Lookup(name).Value.String() == "" {
			missing = append(missing, "--"+name)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return usagef(cmd, "%s is required", missing[0])
	}
	return usagef(cmd, "%s and %s are required", strings.Join(missing[:len(missing)-1], ", "), missing[len(missing)-1])
}

// alias adds old as a hidden second name of the flag canonical, sharing its
// value: a flag renamed for consistency keeps its old spelling working.
func alias(fs *pflag.FlagSet, old, canonical string) {
	f := fs.Lookup(canonical)
	fs.AddFlag(&pflag.Flag{
		Name: old, Usage: "the old name of --" + canonical, Value: f.Value,
		DefValue: f.DefValue, NoOptDefVal: f.NoOptDefVal, Hidden: true,
	})
}

// logFlags are --log-level and --log-format, the same for every command
// that logs.
func logFlags(cmd *cobra.Command, level, format *string) {
	cmd.Flags().StringVar(level, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(format, "log-format", "text", "text or json")
	completeWords(cmd, "log-level", "debug", "info", "warn", "error")
	completeWords(cmd, "log-format", "text", "json")
}

// completeWords makes shell completion offer words for cmd's --flag.
func completeWords(cmd *cobra.Command, flag string, words ...string) {
	if err := cmd.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp)); err != nil {
		panic(err) // a flag that does not exist
	}
}

// completeYAML makes shell completion offer YAML files for cmd's flags.
func completeYAML(cmd *cobra.Command, flags ...string) {
	for _, f := range flags {
		if err := cmd.MarkFlagFilename(f, "yaml", "yml"); err != nil {
			panic(err)
		}
	}
}

func newServeCommand() *cobra.Command {
	var cfg serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "the control plane: serve xDS (ADS, state of the world and delta) for a ClusterSet (default: the embedded local example)",
		Long: `serve is the control plane: it serves xDS (ADS, state of the world and delta)
for a ClusterSet, read from a file (--clusterset, default the embedded
` + local.Name + `) or from Kubernetes member clusters
(--member, --member-secrets-namespace).`,
		Args: noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			cfg.xdsAddressSet = cmd.Flags().Changed("xds-address")
			return cfg.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.clusterSet, "clusterset", "", "ClusterSet YAML file to serve and watch (default: the embedded "+local.Name+")")
	fs.StringVar(&cfg.xdsAddress, "xds-address", "127.0.0.1:15010", "plaintext xDS gRPC address, for local development: proxies are not authenticated there. Loopback only unless --plaintext-remote; off (\"\") by default when an mTLS source (--ca-dir, --spire-socket, --tls-cert) is configured, unless given")
	fs.StringVar(&cfg.httpAddress, "http-address", ":15014", "HTTP address for /metrics, /healthz, /readyz and /debug/")
	fs.StringVar(&cfg.mtlsAddress, "mtls-address", ":15012", "mutual-TLS xDS gRPC address (with --tls-cert): a proxy's identity comes from its certificate")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM certificate (chain) of Horizon's own SVID for the mTLS port; reloaded on change")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&cfg.tlsClientCA, "tls-client-ca", "", "PEM trust bundle proxies' certificates must chain to")
	fs.StringVar(&cfg.identity.caDir, "ca-dir", "", "Horizon is the CA: a root or intermediate from 'horizon ca' (or your own: ca.crt, ca.key, root.crt), optionally with a subdirectory per member cluster holding its intermediate; reloaded on change. Serves the certificate API on the mTLS port")
	fs.StringVar(&cfg.identity.identity, "identity", "", "Horizon's own SPIFFE ID with --ca-dir (default spiffe://<trust domain>/ns/<POD_NAMESPACE or horizon-system>/sa/horizon)")
	fs.StringVar(&cfg.identity.tokenAudience, "token-audience", DefaultTokenAudience, "audience a workload's ServiceAccount token must carry to obtain an SVID")
	fs.DurationVar(&cfg.identity.svidTTL, "svid-ttl", 24*time.Hour, "lifetime of the SVIDs the certificate API issues (the most a workload may ask for)")
	fs.StringVar(&cfg.spireSocket, "spire-socket", "", "SPIRE is the CA: take Horizon's SVID and the trust bundle from this SPIRE agent Workload API socket; proxies get their SVIDs from SPIRE's SDS")
	fs.StringVar(&cfg.svidSource, "svid-provider", "", "where sidecars' SDS secrets default and ROOTCA come from: agent (files from 'horizon agent', static secrets in the bootstrap) or spire (a SPIRE agent's SDS socket); default spire with --spire-socket, else agent. Must match 'horizon bootstrap --svid-provider'")
	fs.DurationVar(&cfg.debounce, "debounce", server.DefaultDebounce, "shortest interval between two renders of the views: a change after a quiet interval is rendered at once, later ones within it are coalesced")
	fs.DurationVar(&cfg.sendTimeout, "send-timeout", server.DefaultSendTimeout, "close a proxy's stream when it does not read a response for this long")
	fs.StringVar(&cfg.trustDomain, "trust-domain", xds.DefaultTrustDomain.Name(), "SPIFFE trust domain of the mesh")
	logFlags(cmd, &cfg.logLevel, &cfg.logFormat)
	fs.StringVar(&cfg.debugMTLSAddress, "debug-mtls-address", "", "also serve /debug/ over mutual TLS here, with the mTLS port's identity, to clients whose SPIFFE ID matches --debug-admin-id (the HTTP port answers /debug/ to loopback clients only)")
	fs.Var((*repeated)(&cfg.debugAdmins), "debug-admin-id", "SPIFFE ID pattern ('*' within a path segment) of the admins --debug-mtls-address serves, e.g. spiffe://cluster.local/ns/horizon-system/sa/admin (repeatable)")
	fs.BoolVar(&cfg.plaintextRemote, "plaintext-remote", false, "allow --xds-address beyond loopback: plaintext xDS authenticates no proxy, so every client that reaches it may claim any cluster")
	fs.Var((*repeated)(&cfg.identityClusters), "identity-cluster", "PATTERN=CLUSTER: bind SVIDs whose SPIFFE ID matches PATTERN to member cluster CLUSTER on the mTLS port, for CAs whose chain names no cluster (SPIRE, your own PKI); Horizon's CA binds clusters itself (repeatable)")
	fs.Var((*repeated)(&cfg.gatewayIdentities), "gateway-identity", "SPIFFE ID pattern of identities that may declare ROLE=gateway on the mTLS port (repeatable; default spiffe://<trust domain>/ns/horizon-system/sa/horizon-eastwest)")
	lim := connguard.DefaultLimits()
	cfg.limits = lim
	fs.IntVar(&cfg.limits.MaxConns, "max-connections", lim.MaxConns, "most open connections on each gRPC port; more are closed at accept")
	fs.IntVar(&cfg.limits.MaxConnsPerSource, "max-connections-per-source", lim.MaxConnsPerSource, "most open connections from one IP address on each gRPC port (proxies behind a NAT share one)")
	fs.Uint32Var(&cfg.limits.MaxConcurrentStreams, "max-streams-per-connection", lim.MaxConcurrentStreams, "most open HTTP/2 streams on one connection (Envoy and gRPC use one ADS stream)")
	fs.Float64Var(&cfg.limits.StreamRate, "stream-rate", lim.StreamRate, "new streams admitted per second on each gRPC port: a reconnect storm beyond --stream-burst waits for its turn, up to 10s, rather than being refused")
	fs.IntVar(&cfg.limits.StreamBurst, "stream-burst", lim.StreamBurst, "new streams admitted at once before --stream-rate paces them")
	fs.IntVar(&cfg.limits.MaxRecvMsgSize, "max-message-bytes", lim.MaxRecvMsgSize, "largest message a client may send (a stream's first message, before it is identified, at most 1 MiB)")
	fs.IntVar(&cfg.maxResponseBytes, "max-response-bytes", server.DefaultMaxResponseBytes, "most bytes of resources in one state-of-the-world xDS response: endpoints and routes past it come in further responses; listeners, clusters or one resource over it are sent whole, logged and counted (negative: no bound)")
	fs.IntVar(&cfg.maxViews, "max-views", server.DefaultMaxViews, "most views (role, cluster, network, locality, labels) rendered at once; a stream that needs one more is refused")
	fs.Var(&cfg.kube.members, "member", "a Kubernetes member cluster: name=N,network=NET,kubeconfig=FILE[,context=C][,region=R][,zone=Z] (repeatable)")
	fs.StringVar(&cfg.kube.secretsNamespace, "member-secrets-namespace", "", "watch member-cluster Secrets in this namespace of the control plane's cluster")
	fs.StringVar(&cfg.kube.kubeconfig, "kubeconfig", "", "kubeconfig of the control plane's own cluster (default: in-cluster)")
	fs.BoolVar(&cfg.kube.allowPlugins, "allow-kubeconfig-plugins", false, "accept kubeconfigs whose users run exec or auth-provider plugins")
	fs.BoolVar(&cfg.kube.allowInsecureTLS, "allow-kubeconfig-insecure-tls", false, "accept kubeconfigs with insecure-skip-tls-verify, whose apiserver anyone on the path can impersonate (test clusters only)")
	fs.DurationVar(&cfg.kube.staleTTL, "stale-ttl", 0, "drop the endpoints of a member cluster unreachable this long (0: keep them)")
	fs.StringVar(&cfg.kube.stateDir, "state-dir", "", "keep each member cluster's last known state here (one file per member, rewritten as it changes); a restart while a member's API server is down serves that member from it, marked stale, after --member-sync-wait (\"\": off; without --state-namespace either, a restart waits for every member)")
	fs.StringVar(&cfg.kube.stateNamespace, "state-namespace", "", "keep each member cluster's last known state in a ConfigMap horizon-state-<member> in this namespace of the control plane's cluster instead: every replica reads them, the MCS controller's leader writes them")
	fs.DurationVar(&cfg.kube.syncWait, "member-sync-wait", kube.DefaultSyncWait, "how long a member cluster configured at start may take to sync before it is served from its state in --state-dir")
	fs.BoolVar(&cfg.kube.mcs, "mcs-controller", true, "write ServiceExport conditions and ServiceImports in the member clusters (one leader at a time)")
	fs.StringVar(&cfg.kube.clusterSetCIDRs, "clusterset-cidrs", mcs.DefaultCIDR, "ranges ClusterSet IPs are allocated from (at most one IPv4 and one IPv6, comma-separated)")
	fs.IntVar(&cfg.kube.sliceEndpoints, "mcs-slice-endpoints", mcs.DefaultMaxEndpointsPerSlice, "most endpoints of one MCS EndpointSlice the MCS controller writes in importing members (1-1000)")
	fs.StringVar(&cfg.kube.leaseNamespace, "leader-election-namespace", defaultLeaseNamespace(), "namespace of the MCS controller's Lease in the control plane's cluster (the default is $POD_NAMESPACE when set)")
	fs.DurationVar(&cfg.gatewayProbeInterval, "gateway-probe-interval", health.DefaultInterval, "how often every east-west gateway address is probed with a TCP connect; one that fails twice in a row is withdrawn from other networks' views until it answers twice (0: no probing)")
	fs.StringVar(&cfg.policy, "policy", "", "failover and traffic policy YAML file (examples/policy/policy.yaml): locality priorities and weights, cluster weights, outlier detection, timeouts, retries; checked against the ClusterSet, reloaded on change, a bad edit keeps the last good policy. xDS is served once it has loaded")
	ij := &cfg.injector
	fs.StringVar(&ij.address, "injector-address", "", "serve the sidecar injector, a mutating admission webhook, over HTTPS here: POST /inject/<cluster> and GET /healthz (\"\": off)")
	fs.StringVar(&ij.config, "injector-config", "", "the injector's configuration YAML (images, Horizon's address, capture defaults); reloaded on change, a bad edit keeps the last good one")
	fs.StringVar(&ij.dnsNames, "injector-dns-names", "", "DNS names of the injector's serving certificate, comma-separated (default horizon-injector.<POD_NAMESPACE or horizon-system>.svc)")
	fs.StringVar(&ij.ipSANs, "injector-ip-sans", "", "IP addresses of the injector's serving certificate, comma-separated")
	fs.StringVar(&ij.cert, "injector-cert", "", "PEM serving certificate of the injector, instead of one from Horizon's CA (e.g. with SPIRE); reloaded on change")
	fs.StringVar(&ij.key, "injector-key", "", "PEM private key for --injector-cert")
	fs.StringVar(&ij.webhookConfig, "injector-webhook-config", "", "name of the MutatingWebhookConfiguration in the control plane's cluster whose caBundle Horizon keeps equal to its CA's root bundle (with --ca-dir)")
	fs.StringVar(&cfg.workloads.file, "workloads", "", "workload groups (VMs outside Kubernetes) and the clusters of VM networks, in the ClusterSet file's format, served with any source, Kubernetes members included; watched")
	fs.BoolVar(&cfg.workloads.crd, "workload-groups-crd", false, "also read workload groups from WorkloadGroup objects (mesh.horizon.io/v1alpha1, the chart's CRD) in the control plane's cluster (--kubeconfig or in-cluster)")
	fs.Var((*repeated)(&cfg.workloads.crdNamespaces), "workload-groups-namespace", "with --workload-groups-crd: read WorkloadGroup objects in this namespace only, a Role's read rather than a cluster-wide one (repeatable; default every namespace)")
	fs.BoolVar(&cfg.workloads.crdStatus, "workload-groups-status", true, "with --workload-groups-crd: write each WorkloadGroup's Accepted condition (served, or why not) through its status subresource (needs update on workloadgroups/status; without it Horizon logs once and serves on)")
	fs.IntVar(&cfg.workloads.limits.PerGroup, "max-workloads-per-group", 200, "most registered instances of one workload group; more joins are refused (group_full)")
	fs.IntVar(&cfg.workloads.limits.Total, "max-workloads", 5000, "most registered workload instances in all; more joins are refused (registry_full)")
	fs.Float64Var(&cfg.workloads.limits.JoinsPerSecond, "workload-join-rate", 20, "workload joins admitted per second (burst 50); more are refused (rate_limited)")
	fs.DurationVar(&cfg.workloads.reportInterval, "workload-report-interval", workload.DefaultReportInterval, "how often workload agents report; an instance is not ready 3 intervals after its last report")
	completeWords(cmd, "svid-provider", string(xds.SVIDFromAgent), string(xds.SVIDFromSPIRE))
	completeYAML(cmd, "clusterset", "policy", "injector-config", "workloads")
	return cmd
}

func newBootstrapCommand() *cobra.Command {
	var cfg bootstrapConfig
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "print a proxy bootstrap (Envoy sidecar/gateway, or grpc-go proxyless)",
		Args:  noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "cluster"); err != nil {
				return err
			}
			cfg.given = map[string]bool{}
			cmd.Flags().Visit(func(f *pflag.Flag) { cfg.given[f.Name] = true })
			return cfg.run(bootstrap.OSHost, cmd.OutOrStdout())
		}),
	}
	p := &cfg.proxy
	fs := cmd.Flags()
	fs.StringVar(&p.Role, "role", "sidecar", "sidecar or gateway (Envoy bootstrap), or proxyless (grpc-go bootstrap JSON)")
	fs.StringVar(&p.ID, "id", "", "node id, unique per proxy (default <role>~$POD_IP~$POD_NAME.<namespace>~<cluster>; without POD_NAME, the host name and a random suffix)")
	fs.StringVar(&p.Cluster, "cluster", "", "member cluster the proxy runs in (CLUSTER_ID, required)")
	fs.StringVar(&p.Network, "network", "", "network the proxy is on (default: its cluster's)")
	fs.StringVar(&p.Namespace, "namespace", "", "workload namespace (NAMESPACE; default $POD_NAMESPACE, else default)")
	fs.StringVar(&p.ServiceAccount, "service-account", "default", "workload service account (SERVICE_ACCOUNT)")
	fs.StringVar(&p.Region, "region", "", "locality region (default: its cluster's)")
	fs.StringVar(&p.Zone, "zone", "", "locality zone")
	fs.StringVar(&p.SubZone, "subzone", "", "locality sub-zone")
	fs.Var((*labelFlags)(&p.Labels), "label", "a workload label, key=value (repeatable): node metadata LABELS, which a traffic policy's failoverPriority may rank on")
	fs.StringVar(&cfg.xdsAddress, "xds-address", "127.0.0.1:15010", "host:port of Horizon's plaintext xDS server (local development: Horizon serves it on loopback only unless told otherwise); ignored with --mtls-address")
	fs.StringVar(&cfg.mtlsAddress, "mtls-address", "", "host:port of Horizon's mutual-TLS xDS server (its port 15012, the one to use in a cluster); when set, the proxy connects there with its SVID instead of to --xds-address. Envoy checks Horizon's SPIFFE ID (--xds-server-id); proxyless gRPC checks Horizon's certificate against the trust bundle in --cert-dir, and needs "+bootstrap.EnvGRPCSPIFFE+"=true in the app's environment (gRFC A87), without which it refuses Horizon's certificate")
	fs.StringVar(&cfg.trustDomain, "trust-domain", xds.DefaultTrustDomain.Name(), "SPIFFE trust domain of the mesh")
	fs.StringVar(&cfg.serverID, "xds-server-id", "", "SPIFFE ID Horizon's certificate must carry on --mtls-address (default spiffe://<trust domain>/ns/horizon-system/sa/horizon). Envoy only: grpc-go cannot check it")
	fs.StringVar(&cfg.provider, "svid-provider", string(xds.SVIDFromAgent), "where Envoy gets its SVID and trust bundle: agent (files that 'horizon agent' writes into --cert-dir, as static secrets) or spire (a SPIRE agent's SDS server on --sds-socket). Must match the setting of 'horizon serve'. Proxyless gRPC always reads --cert-dir")
	fs.StringVar(&cfg.svids.CertDir, "cert-dir", bootstrap.DefaultCertDir, "directory holding "+certs.SVIDFile+", "+certs.SVIDKeyFile+", "+certs.BundleFile+" and "+certs.BundleMapFile+", as 'horizon agent' writes them (--svid-provider agent, and proxyless gRPC); watched for atomic replacement")
	fs.StringVar(&cfg.svids.SDSSocket, "sds-socket", bootstrap.DefaultSDSSocket, "Unix socket of the SPIRE agent's SDS server (--svid-provider spire; Envoy only)")
	fs.Uint32Var(&cfg.maxReceiveBytes, "xds-max-receive-bytes", bootstrap.DefaultEnvoyMaxReceiveBytes, "largest xDS message Envoy accepts from Horizon (the xDS connection's max_receive_message_length); a larger one closes the stream. Envoy only: grpc-go's limit is its fixed 4 MiB")
	fs.IntVar(&cfg.adminPort, "admin-port", 15000, "Envoy admin port on 127.0.0.1")
	fs.Int64Var(&cfg.gateway.MaxConnections, "max-downstream-connections", bootstrap.DefaultMaxDownstreamConnections, "gateway: cap on open downstream connections, all listeners together (the overload manager's downstream connections monitor); keep it under half the file descriptor limit; 0 for none")
	fs.Uint64Var(&cfg.gateway.MaxHeapBytes, "max-heap-bytes", 0, "gateway: heap Envoy may use, e.g. 80% of its container's memory limit; the overload manager then shrinks the heap at 95% and stops accepting connections at 98% (0: heap not watched)")
	fs.IntVar(&cfg.readinessPort, "readiness-port", bootstrap.DefaultReadinessPort, "gateway: port of the readiness endpoint GET "+bootstrap.ReadinessPath+" on 0.0.0.0 (200 while Envoy is live, 503 while it drains); 0 for none")
	fs.StringVar(&cfg.out, "out", "", "write the bootstrap to this file (replaced atomically) instead of standard output, e.g. from an init container whose image has no shell")
	fs.StringVar(&cfg.caBundleEnv, "ca-bundle-env", "", "also write the PEM trust bundle held in this environment variable to <cert-dir>/"+certs.BundleFile+", unless one is there: the roots 'horizon agent' verifies Horizon with at first (the injector sets HORIZON_CA_BUNDLE)")
	completeWords(cmd, "role", string(xds.Sidecar), string(xds.Gateway), string(xds.Proxyless))
	completeWords(cmd, "svid-provider", string(xds.SVIDFromAgent), string(xds.SVIDFromSPIRE))
	return cmd
}

func newViewCommand() *cobra.Command {
	cfg := viewConfig{proxy: bootstrap.Proxy{ID: "view"}}
	cmd := &cobra.Command{
		Use:   "view",
		Short: "print the endpoints a proxy would get, as the server renders them, without a server",
		Args:  noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "cluster"); err != nil {
				return err
			}
			return cfg.run(cmd.OutOrStdout(), cmd.ErrOrStderr())
		}),
	}
	id := &cfg.proxy
	fs := cmd.Flags()
	fs.StringVar(&cfg.clusterSet, "clusterset", "", "ClusterSet YAML file (default: the embedded "+local.Name+")")
	fs.StringVar(&cfg.policy, "policy", "", "failover and traffic policy file, read and checked against the ClusterSet as 'horizon serve --policy' does")
	fs.StringVar(&cfg.workloads, "workloads", "", "workloads file (groups of VMs and their networks) merged into the ClusterSet, as 'horizon serve --workloads' reads it: its declared instances")
	fs.StringVar(&id.Cluster, "cluster", "", "the proxy's cluster (CLUSTER_ID, required)")
	fs.StringVar(&id.Network, "network", "", "the proxy's network (NETWORK; default: its cluster's, the only one the server accepts)")
	fs.StringVar(&id.Role, "role", "sidecar", "sidecar, proxyless or gateway (ROLE)")
	fs.StringVar(&id.Region, "region", "", "the proxy's region (node locality; with no --region, --zone or --subzone: its cluster's locality)")
	fs.StringVar(&id.Zone, "zone", "", "the proxy's zone (needs --region)")
	fs.StringVar(&id.SubZone, "subzone", "", "the proxy's sub-zone")
	fs.Var((*labelFlags)(&id.Labels), "label", "a label of the proxy's workload, key=value (repeatable): node metadata LABELS, which the policy's failoverPriority may rank on")
	fs.StringVar(&cfg.host, "host", "", "only this host (e.g. echo.demo.svc.clusterset.local)")
	fs.StringVar(&cfg.output, "output", "text", "text; or json or yaml: the ClusterLoadAssignments exactly as the server sends them, as /debug/config_dump shows them")
	completeWords(cmd, "role", string(xds.Sidecar), string(xds.Proxyless), string(xds.Gateway))
	completeWords(cmd, "output", "text", "json", "yaml")
	completeYAML(cmd, "clusterset", "policy", "workloads")
	return cmd
}

func newExplainCommand() *cobra.Command {
	var cfg explainConfig
	failover := &cobra.Command{
		Use:     "failover",
		Short:   "for a source locality, each priority level of a service and why each endpoint is there",
		Example: `  horizon explain failover --service echo.demo.svc.clusterset.local:7070 --from us-east/us-east-1a`,
		Args:    noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "service", "from"); err != nil {
				return err
			}
			return cfg.run(cmd.OutOrStdout())
		}),
	}
	q := &cfg.query
	fs := failover.Flags()
	fs.StringVar(&cfg.clusterSet, "clusterset", "", "ClusterSet YAML file (default: the embedded "+local.Name+")")
	fs.StringVar(&cfg.policy, "policy", "", "a traffic policy file, as 'horizon serve --policy' reads it")
	fs.StringVar(&cfg.workloads, "workloads", "", "workloads file (groups of VMs and their networks) merged into the ClusterSet, as 'horizon serve --workloads' reads it: its declared instances")
	fs.StringVar(&q.service, "service", "", "the destination host, optionally with a port (required), e.g. echo.demo.svc.clusterset.local:7070")
	fs.StringVar(&q.from, "from", "", "the source locality, REGION[/ZONE[/SUBZONE]] (required)")
	fs.StringVar(&q.cluster, "cluster", "", "the source cluster (default: the first cluster, by name, with a locality in --from's region)")
	fs.StringVar(&q.role, "role", "sidecar", "sidecar or proxyless")
	fs.Var((*labelFlags)(&q.labels), "label", "a label of the source proxy, key=value (repeatable), for label keys of the policy's failoverPriority")
	completeWords(failover, "role", string(xds.Sidecar), string(xds.Proxyless))
	completeYAML(failover, "clusterset", "policy", "workloads")

	cmd := &cobra.Command{
		Use:   "explain",
		Short: "explain a proxy's view: 'explain failover', 'explain route'",
	}
	cmd.AddCommand(failover, newExplainRouteCommand()) // explainroute.go
	return cmd
}

func newClusterCommand() *cobra.Command {
	var c addSecretConfig
	addSecret := &cobra.Command{
		Use:   "add-secret --cluster NAME --network NETWORK",
		Short: "give Horizon least-privilege access to a member cluster; print its Secret",
		Long: fmt.Sprintf(`add-secret connects to a member cluster (the current context of --kubeconfig,
or --context) and makes sure it holds what Horizon needs to read it, with
least privilege: a namespace, a ServiceAccount, the ClusterRole %q and a
ClusterRoleBinding. It then asks the member for a token for that
ServiceAccount (TokenRequest API, valid for --token-ttl) and prints, on
stdout and nothing else, the member cluster Secret to apply in the control
plane's cluster.

Horizon adds the member when the Secret appears. Rotate the token by running
the command again and applying its output before the old token expires: the
control plane swaps the connection make-before-break. Running it again is
always safe.`, kube.ReaderClusterRole),
		Example: `  horizon cluster add-secret --kubeconfig east.yaml --cluster east --network net-east \
    | kubectl --context control-plane apply -f -`,
		Args: noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "cluster", "network", "kubeconfig"); err != nil {
				return err
			}
			return c.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		}),
	}
	fs := addSecret.Flags()
	fs.StringVar(&c.kubeconfig, "kubeconfig", defaultKubeconfig(), "kubeconfig of the member cluster, with rights to create the objects above (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&c.context, "context", "", "kubeconfig context (default: its current-context)")
	fs.StringVar(&c.server, "server", "", "the member's API server URL as the control plane reaches it (default: the kubeconfig's)")
	fs.StringVar(&c.name, "cluster", "", "member cluster name, a DNS label (required; the old name --name works too)")
	fs.StringVar(&c.network, "network", "", "network the member's pods are on (required)")
	fs.StringVar(&c.region, "region", "", "default locality region of the member's endpoints")
	fs.StringVar(&c.zone, "zone", "", "default locality zone of the member's endpoints")
	fs.StringVar(&c.namespace, "namespace", "horizon-system", "namespace of the ServiceAccount in the member cluster")
	fs.StringVar(&c.serviceAccount, "service-account", "horizon-reader", "ServiceAccount Horizon uses in the member cluster")
	fs.StringVar(&c.secretNamespace, "secret-namespace", "horizon-system", "the control plane's namespace, where the printed Secret goes")
	fs.StringVar(&c.secretName, "secret-name", "", "name of the printed Secret (default member-<name>)")
	fs.DurationVar(&c.tokenTTL, "token-ttl", 8760*time.Hour, "how long the token is valid; rotate it by running the command again (the API server may cap it)")
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "give up after this long")
	alias(fs, "name", "cluster")

	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "member clusters: 'cluster add-secret' gives Horizon least-privilege access to one",
	}
	cmd.AddCommand(addSecret)
	return cmd
}

func newCACommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "the SPIFFE trust root: init, intermediate (per member cluster), issue (test SVIDs)",
		Long: `The ClusterSet's one SPIFFE trust root and the CAs under it.

Private keys are written with mode 0600. Existing files are never overwritten
without --force.`,
	}
	force := func(fs *pflag.FlagSet, force *bool) {
		fs.BoolVar(force, "force", false, "overwrite existing files")
	}

	var in caInitConfig
	initCmd := &cobra.Command{
		Use:   "init --trust-domain DOMAIN --out DIR",
		Short: "make the root CA of a trust domain",
		Long: `init makes a root CA for the trust domain: DIR/root.crt and DIR/root.key.
Keep root.key offline; members need only root.crt.`,
		Args: noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "trust-domain", "out"); err != nil {
				return err
			}
			return in.run(cmd.OutOrStdout())
		}),
	}
	fs := initCmd.Flags()
	fs.StringVar(&in.trustDomain, "trust-domain", "", "the ClusterSet's SPIFFE trust domain, e.g. mesh.example.com (required)")
	fs.StringVar(&in.out, "out", "", "directory to write root.crt and root.key to (required)")
	fs.DurationVar(&in.ttl, "ttl", certs.DefaultRootTTL, "how long the root is valid")
	force(fs, &in.force)

	var im caIntermediateConfig
	intermediate := &cobra.Command{
		Use:   "intermediate --cluster NAME --root-dir DIR --out DIR",
		Short: "make the intermediate CA of a member cluster",
		Long: `intermediate makes the intermediate CA of one member cluster under the root in
--root-dir (a directory made by init, or ca.crt, ca.key and root.crt of your
own CA): DIR/ca.crt, DIR/ca.key and DIR/root.crt, the same three keys the
cluster's CA Secret holds.`,
		Args: noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "cluster", "root-dir", "out"); err != nil {
				return err
			}
			return im.run(cmd.OutOrStdout())
		}),
	}
	fs = intermediate.Flags()
	fs.StringVar(&im.cluster, "cluster", "", "the member cluster's name (required)")
	fs.StringVar(&im.rootDir, "root-dir", "", "directory of the CA to sign with: root.crt and root.key (from init), or ca.crt, ca.key and root.crt (required)")
	fs.StringVar(&im.out, "out", "", "directory to write ca.crt, ca.key and root.crt to (required)")
	fs.DurationVar(&im.ttl, "ttl", certs.DefaultIntermediateTTL, "how long the intermediate is valid (never beyond its parent)")
	force(fs, &im.force)

	var is caIssueConfig
	issue := &cobra.Command{
		Use:   "issue --ca-dir DIR --id spiffe://DOMAIN/ns/NS/sa/SA --out DIR",
		Short: "make a key and an X509-SVID (tests and development)",
		Long: `issue makes a key and an X509-SVID for --id with the CA in --ca-dir (for tests
and development; workloads get theirs from the control plane): DIR/svid.crt,
DIR/svid.key and DIR/bundle.crt.`,
		Args: noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "ca-dir", "id", "out"); err != nil {
				return err
			}
			return is.run(cmd.OutOrStdout())
		}),
	}
	fs = issue.Flags()
	fs.StringVar(&is.caDir, "ca-dir", "", "directory of the issuing CA: ca.crt, ca.key and root.crt, or root.crt and root.key (required)")
	fs.StringVar(&is.id, "id", "", "the workload's SPIFFE ID, spiffe://<trust domain>/ns/<namespace>/sa/<service account> (required)")
	fs.StringVar(&is.out, "out", "", "directory to write svid.crt, svid.key, bundle.crt and bundle.json (the SPIFFE bundle map proxyless gRPC reads) to (required)")
	fs.DurationVar(&is.ttl, "ttl", certs.DefaultSVIDTTL, "how long the SVID is valid (never beyond its CA)")
	force(fs, &is.force)

	cmd.AddCommand(initCmd, intermediate, issue)
	return cmd
}

func newAgentCommand() *cobra.Command {
	var cfg agentConfig
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "keep a workload's SVID current in files Envoy and grpc-go read",
		Args:  noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "mtls-address"); err != nil && !cfg.check {
				return err
			}
			return cfg.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		}),
	}
	fs := cmd.Flags()
	// --mtls-address, --xds-server-id and --cert-dir were --address,
	// --server-id and --out: the names 'horizon bootstrap' and 'horizon
	// gateway' give the same things.
	fs.StringVar(&cfg.mtlsAddress, "mtls-address", "", "host:port of Horizon's mutual-TLS server (its port 15012), which issues the SVIDs (required; old name --address)")
	alias(fs, "address", "mtls-address")
	fs.StringVar(&cfg.trustDomain, "trust-domain", xds.DefaultTrustDomain.Name(), "SPIFFE trust domain of the mesh")
	fs.StringVar(&cfg.serverID, "xds-server-id", "", "SPIFFE ID Horizon's certificate must carry (default spiffe://<trust domain>/ns/horizon-system/sa/horizon; \"any\" accepts any workload of the trust domain; old name --server-id)")
	alias(fs, "server-id", "xds-server-id")
	fs.StringVar(&cfg.bundleFile, "ca-bundle", "", "PEM roots to verify Horizon with until it sends the current bundle (required unless --cert-dir already holds bundle.crt)")
	fs.StringVar(&cfg.tokenFile, "token-file", "", "projected ServiceAccount token with Horizon's audience, read for each request (not needed to renew a valid SVID)")
	fs.StringVar(&cfg.cluster, "cluster", "", "member cluster that issued the token")
	fs.StringVar(&cfg.certDir, "cert-dir", bootstrap.DefaultCertDir, "directory to keep svid.crt, svid.key, bundle.crt and bundle.json in: the --cert-dir of 'horizon bootstrap' and 'horizon gateway' (old name --out)")
	alias(fs, "out", "cert-dir")
	fs.DurationVar(&cfg.ttl, "ttl", 0, "SVID lifetime to ask for (0: Horizon's default)")
	fs.BoolVar(&cfg.check, "check", false, "exit 0 if --cert-dir holds a valid SVID and its key, else 1, and do nothing else: the startup probe of the injected agent")
	fs.BoolVar(&cfg.once, "once", false, "obtain an SVID (unless a valid one is in --cert-dir) and exit, e.g. in an init container")
	fs.StringVar(&cfg.metricsAddress, "metrics-address", "", "serve /metrics here (e.g. 127.0.0.1:15020)")
	fs.StringVar(&cfg.vm.joinTokenFile, "join-token-file", "", "a workload outside Kubernetes (VM): the join token of its workload group ('horizon workload token'), or a ServiceAccount token of the group's identity if the group names a tokenReviewCluster (read afresh for each join); the agent joins the group, keeps the group's SVID current and reports the group's probe")
	fs.StringVar(&cfg.vm.group, "workload-group", "", "with --join-token-file: the workload group, namespace/name")
	fs.StringVar(&cfg.vm.address, "workload-address", "", "with --join-token-file: this instance's IP address, as the mesh reaches it")
	fs.Var((*repeated)(&cfg.vm.labels), "workload-label", "with --join-token-file: key=value label of this instance, added to the group's (repeatable)")
	fs.StringVar(&cfg.vm.probeHost, "probe-host", "127.0.0.1", "with --join-token-file: where the group's probe reaches the workload")
	logFlags(cmd, &cfg.logLevel, &cfg.logFormat)
	return cmd
}

func newCaptureCommand() *cobra.Command {
	var cfg captureConfig
	cmd := &cobra.Command{
		Use:   "capture",
		Short: "redirect a pod's TCP traffic to its sidecar with nftables (the injected init container)",
		Long: `capture replaces the nftables table "inet horizon" of the current network
namespace (the pod's) with rules that redirect inbound TCP to --inbound-port
and outbound TCP to --outbound-port, except the proxy's own traffic
(--proxy-uid), loopback, and the excluded ports and ranges. It programs the
kernel through netlink (no iptables or nft binary) and needs NET_ADMIN.
Running it again replaces the table. The flags mirror the pod annotations
traffic.horizon.io/*.`,
		Example: `  horizon capture --dry-run --exclude-inbound-ports 15020,15021,15090`,
		Args:    noArgs,
		RunE:    runs(func(cmd *cobra.Command) error { return cfg.run(cmd.OutOrStdout()) }),
	}
	fs := cmd.Flags()
	fs.Uint16Var(&cfg.inboundPort, "inbound-port", capture.DefaultInboundPort, "where inbound TCP is redirected (the sidecar's inbound listener)")
	fs.Uint16Var(&cfg.outboundPort, "outbound-port", capture.DefaultOutboundPort, "where outbound TCP is redirected (the sidecar's outbound listener)")
	fs.Uint32Var(&cfg.proxyUID, "proxy-uid", capture.DefaultProxyUID, "uid of the proxy, whose connections are never redirected")
	fs.StringVar(&cfg.includeInboundPorts, "include-inbound-ports", "*", "inbound ports to redirect, comma-separated, or * for all")
	fs.StringVar(&cfg.excludeInboundPorts, "exclude-inbound-ports", "", "inbound ports never redirected, comma-separated")
	fs.StringVar(&cfg.excludeOutboundPorts, "exclude-outbound-ports", "", "outbound destination ports never redirected, comma-separated")
	fs.StringVar(&cfg.includeOutboundIPRanges, "include-outbound-ip-ranges", "*", "outbound destination CIDRs to redirect, comma-separated, or * for all")
	fs.StringVar(&cfg.excludeOutboundIPRanges, "exclude-outbound-ip-ranges", "", "outbound destination CIDRs never redirected, comma-separated")
	fs.BoolVar(&cfg.dryRun, "dry-run", false, "print the table in nft syntax instead of installing it")
	return cmd
}

func newInjectCommand() *cobra.Command {
	var cfg injectConfig
	cmd := &cobra.Command{
		Use:   "inject -f FILE|-",
		Short: "add Horizon's sidecar to the pods of Kubernetes manifests, as the admission webhook would",
		Long: `inject reads multi-document YAML and writes it to standard output with
Horizon's sidecar added to every Pod and to the pod template of every
Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob, exactly as
the injector of 'horizon serve --injector-address' adds it; other kinds pass
through unchanged. Pods labelled sidecar.horizon.io/inject=false, and pods
injected already, are left alone. With no node known, the proxies take
their cluster's locality.`,
		Example: `  horizon inject -f deploy.yaml --injector-config injector.yaml --cluster west \
    --clusterset clusterset.yaml --ca-bundle root.crt | kubectl apply -f -`,
		Args: noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "filename", "injector-config", "cluster", "ca-bundle"); err != nil {
				return err
			}
			return cfg.run(cmd.InOrStdin(), cmd.OutOrStdout())
		}),
	}
	fs := cmd.Flags()
	fs.StringVarP(&cfg.file, "filename", "f", "", "the manifests, or - for standard input (required)")
	fs.StringVar(&cfg.injectorConfig, "injector-config", "", "the injector configuration, as 'horizon serve --injector-config' reads it (required)")
	fs.StringVar(&cfg.cluster, "cluster", "", "member cluster the pods will run in (required)")
	fs.StringVar(&cfg.clusterSet, "clusterset", "", "ClusterSet YAML file, for the cluster's network (default: the embedded "+local.Name+")")
	fs.StringVar(&cfg.mode, "mode", "", "sidecar or proxyless, for pods whose annotation "+inject.AnnotationMode+" says none (default sidecar)")
	fs.StringVar(&cfg.caBundle, "ca-bundle", "", "PEM trust bundle of the mesh (root.crt), which the agent verifies Horizon with (required)")
	completeWords(cmd, "mode", inject.ModeSidecar, inject.ModeProxyless)
	completeYAML(cmd, "filename", "injector-config", "clusterset")
	return cmd
}

func newGatewayCommand() *cobra.Command {
	var cfg gatewayConfig
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "an east-west gateway: SNI passthrough to its network's pods, configured over xDS",
		Args:  noArgs,
		RunE: runs(func(cmd *cobra.Command) error {
			if err := requireFlags(cmd, "cluster"); err != nil {
				return err
			}
			return cfg.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.xdsAddress, "xds-address", "127.0.0.1:15010", "Horizon's xDS address (host:port): its plaintext port, or with --cert-dir its mutual-TLS port")
	fs.StringVar(&cfg.certDir, "cert-dir", "", "directory with the gateway's svid.crt, svid.key and bundle.crt (kept current by 'horizon agent'): connect to --xds-address with mutual TLS; re-read at each connection")
	fs.StringVar(&cfg.trustDomain, "trust-domain", xds.DefaultTrustDomain.Name(), "SPIFFE trust domain of the mesh (with --cert-dir)")
	fs.StringVar(&cfg.serverID, "xds-server-id", "", "SPIFFE ID Horizon's certificate must carry (with --cert-dir; default spiffe://<trust domain>/ns/horizon-system/sa/horizon)")
	fs.StringVar(&cfg.cluster, "cluster", "", "member cluster this gateway belongs to (node metadata CLUSTER_ID; required)")
	fs.StringVar(&cfg.network, "network", "", "network of the cluster (node metadata NETWORK; default: the cluster's, as Horizon knows it)")
	fs.StringVar(&cfg.id, "id", "", "node id (default gateway~<cluster>~<hostname>)")
	fs.StringVar(&cfg.listen, "listen", ":15443", "address for TLS from other networks")
	fs.StringVar(&cfg.httpAddress, "http-address", ":15021", "HTTP address for /metrics, /healthz and /readyz")
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", sni.DefaultDrainTimeout, "on shutdown, how long open connections may finish before they are closed")
	fs.DurationVar(&cfg.helloTimeout, "hello-timeout", sni.DefaultHelloTimeout, "close a connection whose whole TLS ClientHello has not arrived this long after accept (a TLS client sends it at once)")
	fs.DurationVar(&cfg.connectTimeout, "connect-timeout", sni.DefaultConnectTimeout, "timeout of each attempt to connect to an endpoint")
	fs.IntVar(&cfg.maxConns, "max-connections", sni.DefaultMaxConns, "connections open at once; a new one beyond sheds the oldest that has not sent its ClientHello yet, or is refused if all have")
	fs.IntVar(&cfg.maxPerSource, "max-connections-per-source", sni.DefaultMaxConnsPerSource, "connections open at once from one remote IP address, shedding and refusing as --max-connections does among that address's (set it as high as the most connections one NAT address of a remote network carries)")
	logFlags(cmd, &cfg.logLevel, &cfg.logFormat)
	return cmd
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "the build: version, commit, Go version",
		Args:  noArgs,
		Run:   func(cmd *cobra.Command, _ []string) { printVersion(cmd.OutOrStdout()) },
	}
}
