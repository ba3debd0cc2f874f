package kubetest

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kubeconfig renders cfg (server, CA, client certificate or token,
// impersonation) as a kubeconfig with one context.
func Kubeconfig(cfg *rest.Config) ([]byte, error) {
	user := &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		ClientCertificate:     cfg.CertFile,
		ClientKey:             cfg.KeyFile,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Username:              cfg.Username,
		Password:              cfg.Password,
		Impersonate:           cfg.Impersonate.UserName,
		ImpersonateUID:        cfg.Impersonate.UID,
		ImpersonateGroups:     cfg.Impersonate.Groups,
	}
	kc := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{"member": {
			Server:                   cfg.Host,
			CertificateAuthorityData: cfg.CAData,
			CertificateAuthority:     cfg.CAFile,
			InsecureSkipTLSVerify:    cfg.Insecure,
			TLSServerName:            cfg.ServerName,
		}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"member": user},
		Contexts:       map[string]*clientcmdapi.Context{"member": {Cluster: "member", AuthInfo: "member"}},
		CurrentContext: "member",
	}
	return clientcmd.Write(kc)
}

// WriteKubeconfig writes Kubeconfig(cfg) to path, readable by its owner only.
func WriteKubeconfig(path string, cfg *rest.Config) error {
	data, err := Kubeconfig(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// KubeconfigFile writes the cluster's admin kubeconfig into a test's
// temporary folder and returns its path.
func (c *Cluster) KubeconfigFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), c.Name+".kubeconfig")
	if err := WriteKubeconfig(path, c.Config); err != nil {
		t.Fatal(err)
	}
	return path
}
