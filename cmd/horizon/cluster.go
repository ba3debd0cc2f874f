package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery/kube"
)

// addSecretConfig is add-secret's flags.
type addSecretConfig struct {
	kubeconfig, context, server string
	name, network, region, zone string
	namespace, serviceAccount   string
	secretNamespace, secretName string
	tokenTTL, timeout           time.Duration
}

// run runs `horizon cluster add-secret`.
func (c *addSecretConfig) run(ctx context.Context, stdout, stderr io.Writer) error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("cluster add-secret: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	secret, err := c.ensure(ctx, stderr)
	if err != nil {
		return fmt.Errorf("cluster add-secret: member %s: %w", c.name, err)
	}
	out, err := yaml.Marshal(secret)
	if err != nil {
		return fmt.Errorf("cluster add-secret: %w", err)
	}
	_, err = stdout.Write(out)
	return err
}

func defaultKubeconfig() string {
	if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" {
		return filepath.SplitList(env)[0]
	}
	return clientcmd.RecommendedHomeFile
}

// validate checks the values of the flags; that the required ones are given
// is checked before (newClusterCommand).
func (c *addSecretConfig) validate() error {
	var errs []error
	if msgs := validation.IsDNS1123Label(c.name); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--cluster %q: %s", c.name, strings.Join(msgs, "; ")))
	}
	if c.secretName == "" {
		c.secretName = "member-" + c.name
	}
	for flag, v := range map[string]string{"--namespace": c.namespace, "--secret-namespace": c.secretNamespace} {
		if msgs := validation.IsDNS1123Label(v); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s %q: %s", flag, v, strings.Join(msgs, "; ")))
		}
	}
	for flag, v := range map[string]string{"--service-account": c.serviceAccount, "--secret-name": c.secretName} {
		if msgs := validation.IsDNS1123Subdomain(v); v != "" && len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s %q: %s", flag, v, strings.Join(msgs, "; ")))
		}
	}
	if c.tokenTTL < 10*time.Minute {
		errs = append(errs, fmt.Errorf("--token-ttl %v: at least 10m", c.tokenTTL))
	}
	return errors.Join(errs...)
}

// ensure makes sure the member holds the ServiceAccount and its rights, and
// returns the Secret for the control plane. Progress goes to progress.
func (c *addSecretConfig) ensure(ctx context.Context, progress io.Writer) (*corev1.Secret, error) {
	// The operator's own kubeconfig: plugins (cloud logins) and their own
	// choice of TLS are fine here.
	rc, err := kube.LoadKubeconfigFile(c.kubeconfig, c.context, kube.Trust{AllowPlugins: true, AllowInsecureTLS: true})
	if err != nil {
		return nil, err
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	say := func(format string, a ...any) { fmt.Fprintf(progress, format+"\n", a...) }
	say("member %s: %s", c.name, rc.Host)

	if err := kube.GrantReader(ctx, kc, c.namespace, c.serviceAccount, say); err != nil {
		return nil, err
	}

	ttl := int64(c.tokenTTL.Seconds())
	tr, err := kc.CoreV1().ServiceAccounts(c.namespace).CreateToken(ctx, c.serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for serviceaccount %s/%s: %w", c.namespace, c.serviceAccount, err)
	}
	expires := tr.Status.ExpirationTimestamp.Time
	say("token for serviceaccount %s/%s: expires %s; run this command again before then", c.namespace, c.serviceAccount, expires.UTC().Format(time.RFC3339))
	if got := time.Until(expires); got < c.tokenTTL-time.Hour {
		say("warning: the API server shortened the token's life to %v (asked for %v)", got.Round(time.Minute), c.tokenTTL)
	}

	server := rc.Host
	if c.server != "" {
		server = c.server
	}
	cl := &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: rc.CAData,
		TLSServerName:            rc.ServerName,
		InsecureSkipTLSVerify:    rc.Insecure,
	}
	switch {
	case rc.Insecure:
		say("warning: the kubeconfig skips TLS verification; horizon serve refuses it unless --allow-kubeconfig-insecure-tls (test clusters only)")
	case len(rc.CAData) == 0:
		say("note: the kubeconfig holds no CA; the control plane will verify %s with its system roots", server)
	}
	user := c.serviceAccount + "@" + c.name
	kcfg := clientcmdapi.NewConfig()
	kcfg.Clusters[c.name] = cl
	kcfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kcfg.Contexts[c.name] = &clientcmdapi.Context{Cluster: c.name, AuthInfo: user}
	kcfg.CurrentContext = c.name
	data, err := clientcmd.Write(*kcfg)
	if err != nil {
		return nil, err
	}
	// What the control plane will do with it: refuse nothing but the
	// insecure TLS warned about above.
	if _, err := kube.LoadKubeconfig(data, "", kube.Trust{AllowInsecureTLS: rc.Insecure}); err != nil {
		return nil, fmt.Errorf("the kubeconfig for the Secret: %w", err)
	}

	annotations := map[string]string{kube.AnnotationClusterName: c.name, kube.AnnotationNetwork: c.network}
	if c.region != "" {
		annotations[kube.AnnotationRegion] = c.region
	}
	if c.zone != "" {
		annotations[kube.AnnotationZone] = c.zone
	}
	say("apply the Secret %s/%s (printed on stdout) in the control plane's cluster", c.secretNamespace, c.secretName)
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name: c.secretName, Namespace: c.secretNamespace,
			Labels:      map[string]string{kube.LabelMemberSecret: "true", "app.kubernetes.io/part-of": "horizon"},
			Annotations: annotations,
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{kube.SecretKubeconfigKey: data},
	}, nil
}
