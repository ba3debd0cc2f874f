package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery/kube"
)

var managedLabels = map[string]string{"app.kubernetes.io/part-of": "horizon", "app.kubernetes.io/managed-by": "horizon"}

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
		errs = append(errs, fmt.Errorf("--name %q: %s", c.name, strings.Join(msgs, "; ")))
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
	// The operator's own kubeconfig: plugins (cloud logins) are fine here.
	rc, err := kube.LoadKubeconfigFile(c.kubeconfig, c.context, true)
	if err != nil {
		return nil, err
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	say := func(format string, a ...any) { fmt.Fprintf(progress, format+"\n", a...) }
	say("member %s: %s", c.name, rc.Host)

	if err := ensureNamespace(ctx, kc, c.namespace, say); err != nil {
		return nil, err
	}
	if err := ensureServiceAccount(ctx, kc, c.namespace, c.serviceAccount, say); err != nil {
		return nil, err
	}
	if err := ensureClusterRole(ctx, kc, say); err != nil {
		return nil, err
	}
	if err := ensureClusterRoleBinding(ctx, kc, c.namespace, c.serviceAccount, say); err != nil {
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
		say("warning: the kubeconfig skips TLS verification; so will the control plane")
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
	// What the control plane will do with it: refuse nothing.
	if _, err := kube.LoadKubeconfig(data, "", false); err != nil {
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

type sayFunc func(format string, a ...any)

func ensureNamespace(ctx context.Context, kc kubernetes.Interface, name string, say sayFunc) error {
	_, err := kc.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		say("namespace %s: exists", name)
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	_, err = kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: managedLabels}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	say("namespace %s: created", name)
	return nil
}

func ensureServiceAccount(ctx context.Context, kc kubernetes.Interface, ns, name string, say sayFunc) error {
	_, err := kc.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		say("serviceaccount %s/%s: exists", ns, name)
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("serviceaccount %s/%s: %w", ns, name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: managedLabels}}
	if _, err := kc.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("serviceaccount %s/%s: %w", ns, name, err)
	}
	say("serviceaccount %s/%s: created", ns, name)
	return nil
}

// ensureClusterRole creates the reader ClusterRole, or puts its rules back
// to exactly kube.ReaderRules.
func ensureClusterRole(ctx context.Context, kc kubernetes.Interface, say sayFunc) error {
	roles := kc.RbacV1().ClusterRoles()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := roles.Get(ctx, kube.ReaderClusterRole, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: kube.ReaderClusterRole, Labels: managedLabels}, Rules: kube.ReaderRules()}
			if _, err := roles.Create(ctx, role, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("clusterrole %s: %w", kube.ReaderClusterRole, err)
			}
			say("clusterrole %s: created", kube.ReaderClusterRole)
			return nil
		}
		if err != nil {
			return fmt.Errorf("clusterrole %s: %w", kube.ReaderClusterRole, err)
		}
		if apiequality.Semantic.DeepEqual(cur.Rules, kube.ReaderRules()) && cur.AggregationRule == nil {
			say("clusterrole %s: up to date", kube.ReaderClusterRole)
			return nil
		}
		cur.Rules, cur.AggregationRule = kube.ReaderRules(), nil
		if _, err := roles.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("clusterrole %s: %w", kube.ReaderClusterRole, err) // a conflict is retried
		}
		say("clusterrole %s: rules updated", kube.ReaderClusterRole)
		return nil
	})
}

// ensureClusterRoleBinding binds the reader ClusterRole to the ServiceAccount
// (one binding, horizon-reader, for every ServiceAccount add-secret made).
func ensureClusterRoleBinding(ctx context.Context, kc kubernetes.Interface, ns, sa string, say sayFunc) error {
	bindings := kc.RbacV1().ClusterRoleBindings()
	name := kube.ReaderClusterRole
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: kube.ReaderClusterRole}
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := bindings.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			b := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: managedLabels}, RoleRef: ref, Subjects: []rbacv1.Subject{subject}}
			if _, err := bindings.Create(ctx, b, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("clusterrolebinding %s: %w", name, err)
			}
			say("clusterrolebinding %s: created", name)
			return nil
		}
		if err != nil {
			return fmt.Errorf("clusterrolebinding %s: %w", name, err)
		}
		if cur.RoleRef != ref {
			return fmt.Errorf("clusterrolebinding %s exists and binds %s %s, not ClusterRole %s; delete it or choose another --service-account", name, cur.RoleRef.Kind, cur.RoleRef.Name, kube.ReaderClusterRole)
		}
		if slices.Contains(cur.Subjects, subject) {
			say("clusterrolebinding %s: up to date", name)
			return nil
		}
		cur.Subjects = append(cur.Subjects, subject)
		if _, err := bindings.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("clusterrolebinding %s: %w", name, err)
		}
		say("clusterrolebinding %s: subject added", name)
		return nil
	})
}
