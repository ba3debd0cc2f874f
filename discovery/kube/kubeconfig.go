package kube

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ErrPluginRefused is wrapped by the error for a kubeconfig user that runs an
// exec or auth-provider plugin when plugins are not allowed.
var ErrPluginRefused = errors.New("credential plugins are not allowed")

// LoadKubeconfig turns a kubeconfig into a connection to a member cluster.
// context picks the kubeconfig context; "" means its current-context. Only
// that context, its cluster and its user are checked and used.
//
// A kubeconfig is data, often from a Secret someone else wrote, so it may not
// make the control plane run programs or read its own files:
//   - a user with an exec or auth-provider plugin is refused (the error wraps
//     ErrPluginRefused) unless allowPlugins is set;
//   - references to local files (certificate-authority, client-certificate,
//     client-key, tokenFile) are always refused: they would be read from the
//     control plane's file system (its own ServiceAccount token, say) and sent
//     to whatever server the kubeconfig names. Inline them
//     (`kubectl config view --flatten --raw`), or load a file of your own
//     with LoadKubeconfigFile.
func LoadKubeconfig(data []byte, context string, allowPlugins bool) (*rest.Config, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	sel, err := selectContext(cfg, context)
	if err != nil {
		return nil, err
	}
	if err := sel.check(allowPlugins, false); err != nil {
		return nil, err
	}
	return sel.restConfig(cfg)
}

// LoadKubeconfigFile is LoadKubeconfig for a kubeconfig file the operator
// controls (a --kubeconfig flag): the chosen context's file references are
// resolved against the file's folder and read now, so the configuration holds
// data, not paths (a tokenFile stays a path: client-go rereads it, which is
// how projected tokens rotate). Plugins are refused unless allowPlugins is set.
func LoadKubeconfigFile(path, context string, allowPlugins bool) (*rest.Config, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	sel, err := selectContext(cfg, context)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Inline only what this context uses: a stale file behind another
	// context is not this member's problem.
	if err := clientcmdapi.FlattenContent(&sel.cluster.CertificateAuthority, &sel.cluster.CertificateAuthorityData, base); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: cluster %q: %w", path, sel.ctx.Cluster, err)
	}
	if sel.user != nil {
		for _, f := range []struct {
			path *string
			data *[]byte
		}{{&sel.user.ClientCertificate, &sel.user.ClientCertificateData}, {&sel.user.ClientKey, &sel.user.ClientKeyData}} {
			if err := clientcmdapi.FlattenContent(f.path, f.data, base); err != nil {
				return nil, fmt.Errorf("kubeconfig %s: user %q: %w", path, sel.ctx.AuthInfo, err)
			}
		}
		if f := sel.user.TokenFile; f != "" && !filepath.IsAbs(f) {
			sel.user.TokenFile = filepath.Join(base, f)
		}
	}
	if err := sel.check(allowPlugins, true); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rc, err := sel.restConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rc, nil
}

// selection is the context of a kubeconfig that will be used, with its
// cluster and user (nil for an anonymous context).
type selection struct {
	name    string
	ctx     *clientcmdapi.Context
	cluster *clientcmdapi.Cluster
	user    *clientcmdapi.AuthInfo
}

// selectContext finds the context to use and checks that it leads somewhere,
// naming the entry at fault.
func selectContext(cfg *clientcmdapi.Config, context string) (selection, error) {
	s := selection{name: context}
	if s.name == "" {
		s.name = cfg.CurrentContext
	}
	if s.name == "" {
		return s, errors.New("kubeconfig: no current-context, and no context given")
	}
	var ok bool
	if s.ctx, ok = cfg.Contexts[s.name]; !ok || s.ctx == nil {
		return s, fmt.Errorf("kubeconfig: context %q not found (contexts: %q)", s.name, slices.Sorted(maps.Keys(cfg.Contexts)))
	}
	if s.ctx.Cluster == "" {
		return s, fmt.Errorf("kubeconfig: context %q names no cluster", s.name)
	}
	if s.cluster, ok = cfg.Clusters[s.ctx.Cluster]; !ok || s.cluster == nil {
		return s, fmt.Errorf("kubeconfig: cluster %q of context %q not found", s.ctx.Cluster, s.name)
	}
	if s.cluster.Server == "" {
		return s, fmt.Errorf("kubeconfig: cluster %q has no server", s.ctx.Cluster)
	}
	if s.ctx.AuthInfo != "" {
		if s.user, ok = cfg.AuthInfos[s.ctx.AuthInfo]; !ok || s.user == nil {
			return s, fmt.Errorf("kubeconfig: user %q of context %q not found", s.ctx.AuthInfo, s.name)
		}
	}
	return s, nil
}

// check refuses plugins (unless allowed) and local file references; a
// tokenFile passes when allowTokenFile is set (an operator's own file).
func (s selection) check(allowPlugins, allowTokenFile bool) error {
	if f := s.cluster.CertificateAuthority; f != "" {
		return fmt.Errorf("kubeconfig: cluster %q reads certificate-authority from the file %s; inline it as certificate-authority-data", s.ctx.Cluster, f)
	}
	u := s.user
	if u == nil {
		return nil
	}
	if !allowPlugins {
		if u.Exec != nil {
			return fmt.Errorf("kubeconfig: user %q runs the exec plugin %q: %w", s.ctx.AuthInfo, u.Exec.Command, ErrPluginRefused)
		}
		if u.AuthProvider != nil {
			return fmt.Errorf("kubeconfig: user %q uses the auth-provider plugin %q: %w", s.ctx.AuthInfo, u.AuthProvider.Name, ErrPluginRefused)
		}
	}
	files := [][2]string{{"client-certificate", u.ClientCertificate}, {"client-key", u.ClientKey}}
	if !allowTokenFile {
		files = append(files, [2]string{"tokenFile", u.TokenFile})
	}
	for _, f := range files {
		if f[1] != "" {
			return fmt.Errorf("kubeconfig: user %q reads %s from the file %s; inline it (kubectl config view --flatten --raw)", s.ctx.AuthInfo, f[0], f[1])
		}
	}
	return nil
}

func (s selection) restConfig(cfg *clientcmdapi.Config) (*rest.Config, error) {
	rc, err := clientcmd.NewNonInteractiveClientConfig(*cfg, s.name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: context %q: %w", s.name, err)
	}
	return rc, nil
}
