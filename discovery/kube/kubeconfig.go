package kube

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"slices"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ErrPluginRefused is wrapped by the error for a kubeconfig user that runs an
// exec or auth-provider plugin when plugins are not allowed.
var ErrPluginRefused = errors.New("credential plugins are not allowed")

// ErrInsecureTLSRefused is wrapped by the error for a kubeconfig cluster with
// insecure-skip-tls-verify when that is not allowed.
var ErrInsecureTLSRefused = errors.New("insecure-skip-tls-verify is not allowed")

// Trust is what a kubeconfig may ask for beyond the safe default, each an
// operator's explicit choice (horizon serve's --allow-kubeconfig-* flags).
type Trust struct {
	// AllowPlugins lets a user run an exec or auth-provider plugin, a
	// program inside the control plane.
	AllowPlugins bool
	// AllowInsecureTLS accepts insecure-skip-tls-verify: the apiserver's
	// certificate is not checked, so anyone on the path can answer for it
	// (test clusters only).
	AllowInsecureTLS bool
}

// LoadKubeconfig turns a kubeconfig into a connection to a member cluster.
// context picks the kubeconfig context; "" means its current-context. Only
// that context, its cluster and its user are checked and used.
//
// A kubeconfig is data, often from a Secret someone else wrote, so it may not
// make the control plane run programs or read its own files:
//   - a user with an exec or auth-provider plugin is refused (the error wraps
//     ErrPluginRefused) unless trust.AllowPlugins is set;
//   - references to local files (certificate-authority, client-certificate,
//     client-key, tokenFile) are always refused: they would be read from the
//     control plane's file system (its own ServiceAccount token, say) and sent
//     to whatever server the kubeconfig names. Inline them
//     (`kubectl config view --flatten --raw`), or load a file of your own
//     with LoadKubeconfigFile;
//   - insecure-skip-tls-verify is refused unless trust.AllowInsecureTLS is
//     set: with it, whoever sits between Horizon and the apiserver can answer
//     for it and feed the mesh forged endpoints;
//   - a proxy-url is accepted with the schemes client-go supports (http,
//     https, socks5) and refused with any other. The apiserver's certificate
//     is still checked through the proxy.
func LoadKubeconfig(data []byte, context string, trust Trust) (*rest.Config, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	sel, err := selectContext(cfg, context)
	if err != nil {
		return nil, err
	}
	if err := sel.check(trust, false); err != nil {
		return nil, err
	}
	return sel.restConfig(cfg)
}

// LoadKubeconfigFile is LoadKubeconfig for a kubeconfig file the operator
// controls (a --kubeconfig flag): the chosen context's file references are
// resolved against the file's folder and read now, so the configuration holds
// data, not paths (a tokenFile stays a path: client-go rereads it, which is
// how projected tokens rotate). What trust does not allow is refused.
func LoadKubeconfigFile(path, context string, trust Trust) (*rest.Config, error) {
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
	if err := sel.check(trust, true); err != nil {
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

// proxySchemes are the proxy-url schemes client-go dials through.
var proxySchemes = []string{"http", "https", "socks5"}

// check refuses what trust does not allow (plugins, insecure TLS), proxies
// other than client-go's, and local file references; a tokenFile passes
// when allowTokenFile is set (an operator's own file).
func (s selection) check(trust Trust, allowTokenFile bool) error {
	if f := s.cluster.CertificateAuthority; f != "" {
		return fmt.Errorf("kubeconfig: cluster %q reads certificate-authority from the file %s; inline it as certificate-authority-data", s.ctx.Cluster, f)
	}
	if s.cluster.InsecureSkipTLSVerify && !trust.AllowInsecureTLS {
		return fmt.Errorf("kubeconfig: cluster %q sets insecure-skip-tls-verify: its apiserver's certificate would not be checked; give certificate-authority-data (or pass --allow-kubeconfig-insecure-tls, test clusters only): %w", s.ctx.Cluster, ErrInsecureTLSRefused)
	}
	if p := s.cluster.ProxyURL; p != "" {
		u, err := url.Parse(p)
		if err != nil {
			return fmt.Errorf("kubeconfig: cluster %q: proxy-url %q: %w", s.ctx.Cluster, p, err)
		}
		if !slices.Contains(proxySchemes, u.Scheme) {
			return fmt.Errorf("kubeconfig: cluster %q: proxy-url %q: scheme %q is not http, https or socks5", s.ctx.Cluster, p, u.Scheme)
		}
	}
	u := s.user
	if u == nil {
		return nil
	}
	if !trust.AllowPlugins {
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
