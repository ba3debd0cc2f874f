package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// adminKubeconfigFile writes a kubeconfig for a test cluster's admin.
func adminKubeconfigFile(t *testing.T, rc *rest.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "east.yaml")
	if err := kubetest.WriteKubeconfig(path, rc); err != nil {
		t.Fatal(err)
	}
	return path
}

func forbidden(err error) error {
	if apierrors.IsForbidden(err) {
		return nil
	}
	if err == nil {
		return errors.New("allowed, want Forbidden")
	}
	return err
}

func TestClusterAddSecret(t *testing.T) {
	c := kubetest.Start(t, "east")[0]
	ctx := t.Context()
	kubeconfig := adminKubeconfigFile(t, c.Config)
	args := []string{"cluster", "add-secret", "--kubeconfig", kubeconfig, "--name", "east", "--network", "net-east",
		"--region", "us-east", "--zone", "us-east-1a", "--token-ttl", "2h"}

	addSecret := func(t *testing.T) *corev1.Secret {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(ctx, args, &out, &errb); err != nil {
			t.Fatalf("%v\n%s", err, errb.String())
		}
		t.Logf("stderr:\n%s", errb.String())
		obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(out.Bytes(), nil, nil)
		if err != nil {
			t.Fatalf("stdout is not one Kubernetes object: %v\n%s", err, out.String())
		}
		sec, ok := obj.(*corev1.Secret)
		if !ok {
			t.Fatalf("stdout holds a %v, want a Secret", gvk)
		}
		return sec
	}

	sec := addSecret(t)
	if sec.Namespace != "horizon-system" || sec.Name != "member-east" || sec.Labels[kube.LabelMemberSecret] != "true" {
		t.Errorf("Secret %s/%s labels %v", sec.Namespace, sec.Name, sec.Labels)
	}
	for k, want := range map[string]string{
		kube.AnnotationClusterName: "east", kube.AnnotationNetwork: "net-east", kube.AnnotationRegion: "us-east", kube.AnnotationZone: "us-east-1a",
	} {
		if got := sec.Annotations[k]; got != want {
			t.Errorf("annotation %s = %q, want %q", k, got, want)
		}
	}
	// The control plane accepts the kubeconfig as it is: no plugin, no file.
	rc, err := kube.LoadKubeconfig(sec.Data[kube.SecretKubeconfigKey], "", kube.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != c.Config.Host || rc.BearerToken == "" || len(rc.CAData) == 0 || len(rc.CertData) != 0 {
		t.Fatalf("kubeconfig: host %s, token %v, CA %v, client certificate %v", rc.Host, rc.BearerToken != "", len(rc.CAData) > 0, len(rc.CertData) > 0)
	}

	// Least privilege: what Horizon needs works, nothing more.
	checkRights := func(t *testing.T, rc *rest.Config) {
		t.Helper()
		kc := kubernetes.NewForConfigOrDie(rc)
		mcs := mcsclient.NewForConfigOrDie(rc)
		list := metav1.ListOptions{}
		for what, call := range map[string]func() error{
			"list services":       func() error { _, err := kc.CoreV1().Services("").List(ctx, list); return err },
			"list endpointslices": func() error { _, err := kc.DiscoveryV1().EndpointSlices("").List(ctx, list); return err },
			"list pods":           func() error { _, err := kc.CoreV1().Pods("").List(ctx, list); return err },
			"list nodes":          func() error { _, err := kc.CoreV1().Nodes().List(ctx, list); return err },
			"list namespaces":     func() error { _, err := kc.CoreV1().Namespaces().List(ctx, list); return err },
			"list serviceexports": func() error { _, err := mcs.MulticlusterV1beta1().ServiceExports("").List(ctx, list); return err },
			"write serviceimports": func() error {
				imp := &mcsv1beta1.ServiceImport{
					ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"},
					Spec:       mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP, Ports: []mcsv1beta1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
				}
				if _, err := mcs.MulticlusterV1beta1().ServiceImports("default").Create(ctx, imp, metav1.CreateOptions{}); err != nil {
					return err
				}
				return mcs.MulticlusterV1beta1().ServiceImports("default").Delete(ctx, "probe", metav1.DeleteOptions{})
			},
		} {
			testkit.Eventually(t, 15*time.Second, what, call)
		}
		for what, call := range map[string]func() error{
			"list secrets": func() error { _, err := kc.CoreV1().Secrets("").List(ctx, list); return forbidden(err) },
			"get a secret": func() error {
				_, err := kc.CoreV1().Secrets("kube-system").Get(ctx, "x", metav1.GetOptions{})
				return forbidden(err)
			},
			"list configmaps": func() error { _, err := kc.CoreV1().ConfigMaps("").List(ctx, list); return forbidden(err) },
			"create a service": func() error {
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "evil"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
				_, err := kc.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
				return forbidden(err)
			},
			"create a serviceexport": func() error {
				_, err := mcs.MulticlusterV1beta1().ServiceExports("default").Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "evil"}}, metav1.CreateOptions{})
				return forbidden(err)
			},
			"create a token": func() error {
				_, err := kc.CoreV1().ServiceAccounts("horizon-system").CreateToken(ctx, "horizon-reader", nil, metav1.CreateOptions{})
				return forbidden(err)
			},
		} {
			testkit.Eventually(t, 15*time.Second, what+" is forbidden", call)
		}
	}
	checkRights(t, rc)

	// Running it again is fine, puts drifted rules back, and gives a new
	// token; the first one stays valid until it expires.
	role, err := c.Kube.RbacV1().ClusterRoles().Get(ctx, kube.ReaderClusterRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}})
	if _, err := c.Kube.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec2 := addSecret(t)
	rc2, err := kube.LoadKubeconfig(sec2.Data[kube.SecretKubeconfigKey], "", kube.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	if rc2.BearerToken == rc.BearerToken {
		t.Error("the second run reused the token")
	}
	checkRights(t, rc2)
	if _, err := kubernetes.NewForConfigOrDie(rc).CoreV1().Services("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the first token: %v", err)
	}
	binding, err := c.Kube.RbacV1().ClusterRoleBindings().Get(ctx, kube.ReaderClusterRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(binding.Subjects) != 1 {
		t.Errorf("binding subjects %v", binding.Subjects)
	}

	// The control plane takes the printed Secret as a member.
	t.Run("SecretWatcher accepts it", func(t *testing.T) {
		if _, err := c.Kube.CoreV1().Secrets("horizon-system").Create(ctx, sec2, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		members := &setRecorder{}
		wctx, cancel := context.WithCancel(ctx)
		w := &kube.SecretWatcher{Kube: c.Kube, Namespace: "horizon-system", Members: members}
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		select {
		case <-w.Synced():
		case <-time.After(30 * time.Second):
			t.Fatal("SecretWatcher did not sync")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		got := members.get()
		if len(got) != 1 || got[0].Name != "east" || got[0].Network != "net-east" ||
			got[0].Locality != (discovery.Locality{Region: "us-east", Zone: "us-east-1a"}) || got[0].Rest.Host != c.Config.Host {
			t.Fatalf("members set: %+v", got)
		}
	})
}

type setRecorder struct {
	mu  sync.Mutex
	set []kube.MemberConfig
}

func (r *setRecorder) Set(cfg kube.MemberConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set = append(r.set, cfg)
	return nil
}

func (r *setRecorder) Remove(string) {}

func (r *setRecorder) get() []kube.MemberConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]kube.MemberConfig(nil), r.set...)
}

func TestClusterAddSecretFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"remove-secret"}, `unknown command "remove-secret"`},
		{[]string{"add-secret", "--network", "n", "--kubeconfig", "k"}, "--cluster is required"},
		{[]string{"add-secret", "--cluster", "East_1", "--network", "n", "--kubeconfig", "k"}, `--cluster "East_1"`},
		{[]string{"add-secret", "--name", "East_1", "--network", "n", "--kubeconfig", "k"}, `--cluster "East_1"`}, // the old name
		{[]string{"add-secret", "--name", "east", "--kubeconfig", "k"}, "--network is required"},
		{[]string{"add-secret", "--name", "east", "--network", "n", "--kubeconfig", "k", "--token-ttl", "1m"}, "--token-ttl 1m0s: at least 10m"},
		{[]string{"add-secret", "--name", "east", "--network", "n", "--kubeconfig", "k", "--namespace", "Bad"}, `--namespace "Bad"`},
		{[]string{"add-secret", "--name", "east", "--network", "n", "--kubeconfig", filepath.Join(t.TempDir(), "none.yaml")}, "none.yaml"},
		{[]string{"add-secret", "--name", "east", "--network", "n", "--kubeconfig", "k", "extra"}, `unexpected arguments ["extra"]`},
	} {
		var out, errb bytes.Buffer
		err := cluster(t.Context(), tc.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("%q: stdout %q", tc.args, out.String())
		}
	}
}
