package dnstest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ServiceAccount is the user CoreDNS runs as in a member cluster.
const ServiceAccount = "system:serviceaccount:kube-system:coredns"

// AsCoreDNS installs CoreDNS's rights in a member: kubeadm's system:coredns
// (testdata/system-coredns.yaml) and the ClusterRole and binding of
// ExampleFile; it returns cfg impersonating CoreDNS's ServiceAccount, so a
// CoreDNS started with it has exactly those rights.
func AsCoreDNS(ctx context.Context, cfg *rest.Config) (*rest.Config, error) {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..", "..")
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	for _, file := range []string{filepath.Join(filepath.Dir(self), "testdata", "system-coredns.yaml"), filepath.Join(root, filepath.FromSlash(ExampleFile))} {
		if err := applyRBAC(ctx, client, file); err != nil {
			return nil, err
		}
	}
	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: ServiceAccount, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}}
	return as, nil
}

// applyRBAC creates the ClusterRoles and ClusterRoleBindings of a file, and
// nothing else of it.
func applyRBAC(ctx context.Context, client kubernetes.Interface, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		var kind metav1.TypeMeta
		if err := utilyaml.Unmarshal(doc, &kind); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		switch kind.Kind {
		case "ClusterRole":
			var role rbacv1.ClusterRole
			if err := utilyaml.Unmarshal(doc, &role); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if _, err := client.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%s: ClusterRole %s: %w", file, role.Name, err)
			}
		case "ClusterRoleBinding":
			var binding rbacv1.ClusterRoleBinding
			if err := utilyaml.Unmarshal(doc, &binding); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%s: ClusterRoleBinding %s: %w", file, binding.Name, err)
			}
		}
	}
}
