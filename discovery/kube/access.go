package kube

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// managedLabels mark what GrantReader creates in a member cluster.
var managedLabels = map[string]string{"app.kubernetes.io/part-of": "horizon", "app.kubernetes.io/managed-by": "horizon"}

// GrantReader gives a ServiceAccount of a member cluster the read access a
// Member needs (ReaderRules), creating what is missing: the namespace, the
// ServiceAccount, the ClusterRole ReaderClusterRole (its rules put back to
// exactly ReaderRules) and one binding of it. It is idempotent, and says
// what it found or did on say (`horizon cluster add-secret`).
func GrantReader(ctx context.Context, kc kubernetes.Interface, namespace, serviceAccount string, say func(format string, a ...any)) error {
	if err := ensureNamespace(ctx, kc, namespace, say); err != nil {
		return err
	}
	if err := ensureServiceAccount(ctx, kc, namespace, serviceAccount, say); err != nil {
		return err
	}
	if err := ensureClusterRole(ctx, kc, say); err != nil {
		return err
	}
	return ensureClusterRoleBinding(ctx, kc, namespace, serviceAccount, say)
}

func ensureNamespace(ctx context.Context, kc kubernetes.Interface, name string, say func(format string, a ...any)) error {
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

func ensureServiceAccount(ctx context.Context, kc kubernetes.Interface, ns, name string, say func(format string, a ...any)) error {
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
func ensureClusterRole(ctx context.Context, kc kubernetes.Interface, say func(format string, a ...any)) error {
	roles := kc.RbacV1().ClusterRoles()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := roles.Get(ctx, ReaderClusterRole, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ReaderClusterRole, Labels: managedLabels}, Rules: ReaderRules()}
			if _, err := roles.Create(ctx, role, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("clusterrole %s: %w", ReaderClusterRole, err)
			}
			say("clusterrole %s: created", ReaderClusterRole)
			return nil
		}
		if err != nil {
			return fmt.Errorf("clusterrole %s: %w", ReaderClusterRole, err)
		}
		if apiequality.Semantic.DeepEqual(cur.Rules, ReaderRules()) && cur.AggregationRule == nil {
			say("clusterrole %s: up to date", ReaderClusterRole)
			return nil
		}
		cur.Rules, cur.AggregationRule = ReaderRules(), nil
		if _, err := roles.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("clusterrole %s: %w", ReaderClusterRole, err) // a conflict is retried
		}
		say("clusterrole %s: rules updated", ReaderClusterRole)
		return nil
	})
}

// ensureClusterRoleBinding binds the reader ClusterRole to the ServiceAccount
// (one binding, horizon-reader, for every ServiceAccount add-secret made).
func ensureClusterRoleBinding(ctx context.Context, kc kubernetes.Interface, ns, sa string, say func(format string, a ...any)) error {
	bindings := kc.RbacV1().ClusterRoleBindings()
	name := ReaderClusterRole
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ReaderClusterRole}
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
			return fmt.Errorf("clusterrolebinding %s exists and binds %s %s, not ClusterRole %s; delete it or choose another --service-account", name, cur.RoleRef.Kind, cur.RoleRef.Name, ReaderClusterRole)
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
