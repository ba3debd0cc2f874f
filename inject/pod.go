package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/xds/bootstrap"
)

// Labels and annotations of the contract (Istio's, renamed).
const (
	// LabelNamespaceInjection on a namespace: "enabled" or "disabled".
	LabelNamespaceInjection = "horizon-injection"
	// LabelInject on a pod: "true" or "false"; wins over the namespace's.
	LabelInject = "sidecar.horizon.io/inject"
	// AnnotationMode on a pod: "sidecar" (default) or "proxyless".
	AnnotationMode = "sidecar.horizon.io/mode"
	// AnnotationStatus is written on injected pods (JSON Status).
	AnnotationStatus = "sidecar.horizon.io/status"
	// LabelTLSMode set to TLSModeMTLS on injected pods tells Horizon their
	// endpoints accept mutual TLS with their SVID (discovery/kube reads it):
	// Envoy's inbound listener in sidecar mode, grpc-go's xDS server
	// credentials in proxyless mode. Without it, Horizon sends plaintext to
	// them, and no gateway can route a call to them from another network.
	LabelTLSMode = "security.horizon.io/tlsMode"
	TLSModeMTLS  = "mtls"

	AnnotationIncludeInboundPorts     = "traffic.horizon.io/includeInboundPorts"
	AnnotationExcludeInboundPorts     = "traffic.horizon.io/excludeInboundPorts"
	AnnotationExcludeOutboundPorts    = "traffic.horizon.io/excludeOutboundPorts"
	AnnotationIncludeOutboundIPRanges = "traffic.horizon.io/includeOutboundIPRanges"
	AnnotationExcludeOutboundIPRanges = "traffic.horizon.io/excludeOutboundIPRanges"
)

// Modes of AnnotationMode.
const (
	ModeSidecar   = "sidecar"
	ModeProxyless = "proxyless"
)

// Names of what injection adds.
const (
	VolumeToken     = "horizon-token"
	VolumeCerts     = "horizon-certs"
	VolumeBootstrap = "horizon-bootstrap"

	ContainerBootstrap = "horizon-bootstrap"
	ContainerCapture   = "horizon-capture"
	ContainerAgent     = "horizon-agent"
	ContainerProxy     = "horizon-proxy"
)

// Paths inside the injected containers.
const (
	TokenDir      = "/var/run/secrets/horizon"
	TokenFile     = TokenDir + "/token"
	CertDir       = bootstrap.DefaultCertDir // /etc/horizon/certs
	BootstrapDir  = "/etc/horizon/bootstrap"
	BootstrapFile = BootstrapDir + "/bootstrap.json"
	// HorizonBinary is the Horizon image's binary (internal/image).
	HorizonBinary = "/horizon"
	// EnvCABundle holds Horizon's PEM trust bundle in the bootstrap init
	// container, which writes it to CertDir/bundle.crt.
	EnvCABundle = "HORIZON_CA_BUNDLE"
	// EnvGRPCBootstrap is where grpc-go finds its xDS bootstrap.
	EnvGRPCBootstrap = "GRPC_XDS_BOOTSTRAP"
	tokenTTLSeconds  = 3600
)

// Target is where the pod runs, as far as its bootstrap cares.
type Target struct {
	Cluster string // the member cluster
	Network string // the cluster's network
	// Region and Zone of the pod's node, when known at admission; empty:
	// Horizon gives the proxy its cluster's locality.
	Region, Zone string
	CABundle     []byte // PEM roots the agent verifies Horizon with
}

// TargetFor is the Target of a pod admitted by cluster's apiserver, from
// the ClusterSet and, when the pod names it, the pod's node.
func TargetFor(cs *discovery.ClusterSet, cluster string, node *corev1.Node, bundle []byte) (Target, error) {
	c, ok := cs.Cluster(cluster)
	if !ok {
		return Target{}, fmt.Errorf("cluster %q is not a member of the ClusterSet", cluster)
	}
	t := Target{Cluster: c.Name, Network: c.Network, CABundle: bundle}
	if node != nil {
		t.Region = node.Labels[corev1.LabelTopologyRegion]
		t.Zone = node.Labels[corev1.LabelTopologyZone]
		if t.Region == "" {
			t.Zone = "" // a zone needs its region
		}
	}
	return t, nil
}

// Status is the JSON of the status annotation.
type Status struct {
	Version        string   `json:"version"`
	Mode           string   `json:"mode"`
	InitContainers []string `json:"initContainers"`
	Containers     []string `json:"containers,omitempty"`
	Volumes        []string `json:"volumes"`
}

// Skip says why a pod is not injected (Pod returns it with a nil error).
type Skip string

func (s Skip) Error() string { return string(s) }

// Reasons for Skip.
const (
	SkipOptOut   Skip = "opted out (label " + LabelInject + "=false)"
	SkipInjected Skip = "already injected (annotation " + AnnotationStatus + ")"
	SkipHost     Skip = "host network: capture would redirect the node's traffic"
)

// Pod returns pod with Horizon's sidecar for t, or a Skip error for a pod
// that is not to be injected. pod is not changed. An error that is not a
// Skip names the pod and what is wrong with it (a bad annotation).
func Pod(c Config, t Target, pod *corev1.Pod) (*corev1.Pod, error) {
	if pod.Labels[LabelInject] == "false" {
		return nil, SkipOptOut
	}
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		return nil, SkipInjected
	}
	if pod.Spec.HostNetwork {
		return nil, SkipHost
	}
	out, err := inject(c, t, pod.DeepCopy())
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", podName(pod), err)
	}
	return out, nil
}

// podName is the pod's namespace/name, or its generateName and "*" when it
// has no name yet (pods of a ReplicaSet at admission).
func podName(pod *corev1.Pod) string {
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	if pod.Namespace == "" {
		return name
	}
	return pod.Namespace + "/" + name
}

func inject(c Config, t Target, pod *corev1.Pod) (*corev1.Pod, error) {
	if t.Cluster == "" {
		return nil, errors.New("no cluster to inject for")
	}
	mode := ModeSidecar
	if m, ok := pod.Annotations[AnnotationMode]; ok {
		switch m {
		case ModeSidecar, ModeProxyless:
			mode = m
		default:
			return nil, fmt.Errorf("annotation %s=%q: want %s or %s", AnnotationMode, m, ModeSidecar, ModeProxyless)
		}
	}
	for _, name := range []string{VolumeToken, VolumeCerts, VolumeBootstrap} {
		if slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name }) {
			return nil, fmt.Errorf("volume %q is Horizon's: the pod has one of that name", name)
		}
	}
	for _, name := range []string{ContainerBootstrap, ContainerCapture, ContainerAgent, ContainerProxy} {
		has := func(c corev1.Container) bool { return c.Name == name }
		if slices.ContainsFunc(pod.Spec.Containers, has) || slices.ContainsFunc(pod.Spec.InitContainers, has) {
			return nil, fmt.Errorf("container %q is Horizon's: the pod has one of that name", name)
		}
	}
	// The agent writes the SVID's key (mode 0600) as the uid that reads
	// it: Envoy's in sidecar mode; a proxyless app's own when the pod says
	// which, as grpc-go reads the key in the app.
	uid := c.ProxyUID
	if mode == ModeProxyless {
		if u := appUID(pod); u != nil && *u != 0 { // root reads any uid's key
			uid = *u
		}
	}

	// The projected token needs the pod's ServiceAccount named: the
	// ServiceAccount admission plugin names "default" when the pod names
	// none, and does that before webhooks; manifests and API servers
	// without the plugin get the same here.
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = "default"
	}
	var inits []corev1.Container
	boot, err := bootstrapContainer(c, t, pod, mode, uid)
	if err != nil {
		return nil, err
	}
	inits = append(inits, boot)
	if mode == ModeSidecar {
		spec, err := c.Capture.spec(c.ProxyUID, pod.Annotations)
		if err != nil {
			return nil, err
		}
		inits = append(inits, corev1.Container{
			Name:            ContainerCapture,
			Image:           c.HorizonImage,
			ImagePullPolicy: c.ImagePullPolicy,
			Args:            append([]string{"capture"}, spec.Args()...),
			SecurityContext: &corev1.SecurityContext{
				RunAsUser:                ptr.To[int64](0),
				RunAsNonRoot:             ptr.To(false),
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				Capabilities: &corev1.Capabilities{
					Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
					Drop: []corev1.Capability{"ALL"},
				},
			},
			Resources: smallResources(),
		})
	}
	inits = append(inits, agentContainer(c, t, uid))
	if mode == ModeSidecar {
		inits = append(inits, corev1.Container{
			Name:            ContainerProxy,
			Image:           c.ProxyImage,
			ImagePullPolicy: c.ImagePullPolicy,
			RestartPolicy:   ptr.To(corev1.ContainerRestartPolicyAlways),
			Command:         []string{"envoy"},
			Args:            []string{"-c", BootstrapFile, "--log-level", "warning"},
			SecurityContext: restricted(c.ProxyUID),
			VolumeMounts: []corev1.VolumeMount{
				{Name: VolumeBootstrap, MountPath: BootstrapDir, ReadOnly: true},
				{Name: VolumeCerts, MountPath: CertDir, ReadOnly: true},
			},
		})
	}
	added := Status{Version: c.Version(), Mode: mode, Volumes: []string{VolumeToken, VolumeCerts, VolumeBootstrap}}
	for _, ic := range inits {
		added.InitContainers = append(added.InitContainers, ic.Name)
	}
	// Horizon's containers go first: the pod's own init containers then
	// start with capture in place, the SVID written and Envoy running.
	pod.Spec.InitContainers = append(inits, pod.Spec.InitContainers...)

	if mode == ModeProxyless {
		for i := range pod.Spec.Containers {
			ac := &pod.Spec.Containers[i]
			setEnv(ac, corev1.EnvVar{Name: EnvGRPCBootstrap, Value: BootstrapFile})
			setEnv(ac, corev1.EnvVar{Name: bootstrap.EnvGRPCSPIFFE, Value: "true"})
			ac.VolumeMounts = append(ac.VolumeMounts,
				corev1.VolumeMount{Name: VolumeBootstrap, MountPath: BootstrapDir, ReadOnly: true},
				corev1.VolumeMount{Name: VolumeCerts, MountPath: CertDir, ReadOnly: true},
			)
		}
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes,
		corev1.Volume{Name: VolumeToken, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: c.TokenAudience, ExpirationSeconds: ptr.To[int64](tokenTTLSeconds), Path: "token",
			}}},
		}}},
		corev1.Volume{Name: VolumeCerts, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		corev1.Volume{Name: VolumeBootstrap, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	)
	status, err := json.Marshal(added)
	if err != nil {
		return nil, err
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationStatus] = string(status)
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[LabelTLSMode] = TLSModeMTLS
	return pod, nil
}

// appUID is the uid of the pod's first container, when the pod says it.
func appUID(pod *corev1.Pod) *int64 {
	if len(pod.Spec.Containers) > 0 {
		if sc := pod.Spec.Containers[0].SecurityContext; sc != nil && sc.RunAsUser != nil {
			return sc.RunAsUser
		}
	}
	if sc := pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		return sc.RunAsUser
	}
	return nil
}

func bootstrapContainer(c Config, t Target, pod *corev1.Pod, mode string, uid int64) (corev1.Container, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	args := []string{
		"bootstrap",
		"--role=" + mode,
		"--cluster=" + t.Cluster,
		"--service-account=" + sa,
		"--trust-domain=" + c.TrustDomain,
		"--mtls-address=" + c.xdsAddress(t.Cluster),
		"--cert-dir=" + CertDir,
		"--ca-bundle-env=" + EnvCABundle,
		"--out=" + BootstrapFile,
	}
	if t.Network != "" {
		args = append(args, "--network="+t.Network)
	}
	if mode == ModeSidecar {
		// grpc-go cannot check Horizon's SPIFFE ID, and refuses a pin.
		args = append(args, "--xds-server-id="+c.XDSServerID)
	}
	if t.Region != "" {
		args = append(args, "--region="+t.Region)
		if t.Zone != "" {
			args = append(args, "--zone="+t.Zone)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(pod.Labels)) {
		if strings.Contains(k, "horizon.io/") || k == "pod-template-hash" || k == "controller-revision-hash" {
			continue
		}
		args = append(args, "--label="+k+"="+pod.Labels[k])
	}
	if len(t.CABundle) == 0 {
		return corev1.Container{}, errors.New("no trust bundle to give the agent")
	}
	return corev1.Container{
		Name:            ContainerBootstrap,
		Image:           c.HorizonImage,
		ImagePullPolicy: c.ImagePullPolicy,
		Args:            args,
		Env: []corev1.EnvVar{
			fieldEnv(bootstrap.EnvPodName, "metadata.name"),
			fieldEnv(bootstrap.EnvPodNamespace, "metadata.namespace"),
			fieldEnv(bootstrap.EnvPodIP, "status.podIP"),
			{Name: EnvCABundle, Value: string(t.CABundle)},
		},
		SecurityContext: restricted(uid),
		VolumeMounts: []corev1.VolumeMount{
			{Name: VolumeBootstrap, MountPath: BootstrapDir},
			{Name: VolumeCerts, MountPath: CertDir},
		},
		Resources: smallResources(),
	}, nil
}

func agentContainer(c Config, t Target, uid int64) corev1.Container {
	return corev1.Container{
		Name:            ContainerAgent,
		Image:           c.HorizonImage,
		ImagePullPolicy: c.ImagePullPolicy,
		RestartPolicy:   ptr.To(corev1.ContainerRestartPolicyAlways),
		Args: []string{
			"agent",
			"--mtls-address=" + c.xdsAddress(t.Cluster),
			"--cluster=" + t.Cluster,
			"--trust-domain=" + c.TrustDomain,
			"--xds-server-id=" + c.XDSServerID,
			"--token-file=" + TokenFile,
			"--cert-dir=" + CertDir,
		},
		// Native sidecars start in order, each once its startup probe
		// passes: the app starts with an SVID in place.
		StartupProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
				Command: []string{HorizonBinary, "agent", "--check", "--cert-dir=" + CertDir},
			}},
			PeriodSeconds:    1,
			FailureThreshold: 300,
			TimeoutSeconds:   5,
		},
		SecurityContext: restricted(uid),
		VolumeMounts: []corev1.VolumeMount{
			{Name: VolumeToken, MountPath: TokenDir, ReadOnly: true},
			{Name: VolumeCerts, MountPath: CertDir},
		},
		Resources: smallResources(),
	}
}

// restricted is the security context of Horizon's containers but capture:
// the Pod Security "restricted" profile, as uid.
func restricted(uid int64) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsUser:                ptr.To(uid),
		RunAsGroup:               ptr.To(uid),
		RunAsNonRoot:             ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func smallResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("10m"),
		corev1.ResourceMemory: resource.MustParse("32Mi"),
	}}
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// setEnv adds e to c unless c sets that variable already.
func setEnv(c *corev1.Container, e corev1.EnvVar) {
	if !slices.ContainsFunc(c.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name }) {
		c.Env = append(c.Env, e)
	}
}
