package kube

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKubeconfig(t *testing.T) {
	for _, tc := range []struct {
		file         string
		context      string
		allowPlugins bool
		insecureTLS  bool
		wantHost     string // when it loads
		wantErr      string // when it does not
		wantPlugin   bool   // the error wraps ErrPluginRefused
	}{
		{file: "valid.yaml", wantHost: "https://east.example.com:6443"},
		{file: "valid.yaml", context: "east", wantHost: "https://east.example.com:6443"},
		{file: "valid.yaml", context: "west", wantErr: `context "west" not found (contexts: ["east"])`},
		{file: "multi.yaml", context: "west", wantHost: "https://west.example.com:6443"},
		{file: "multi.yaml", wantErr: `user "cloud-user" runs the exec plugin "aws"`, wantPlugin: true},
		{file: "exec.yaml", wantErr: `user "eks-admin" runs the exec plugin "aws"`, wantPlugin: true},
		{file: "exec.yaml", allowPlugins: true, wantHost: "https://eks.example.com"},
		{file: "auth-provider.yaml", wantErr: `user "oidc-user" uses the auth-provider plugin "oidc"`, wantPlugin: true},
		{file: "auth-provider.yaml", allowPlugins: true, wantHost: "https://oidc.example.com"},
		{file: "broken.yaml", wantErr: "kubeconfig: yaml"},
		{file: "not-kubeconfig.yaml", wantErr: "kubeconfig: "},
		{file: "empty.yaml", wantErr: "no current-context, and no context given"},
		{file: "no-current-context.yaml", wantErr: "no current-context, and no context given"},
		{file: "missing-context.yaml", wantErr: `context "west" not found`},
		{file: "missing-cluster.yaml", wantErr: `cluster "east" of context "east" not found`},
		{file: "no-server.yaml", wantErr: `cluster "east" has no server`},
		{file: "missing-user.yaml", wantErr: `user "nobody" of context "east" not found`},
		{file: "token-file.yaml", wantErr: `user "thief" reads tokenFile from the file /var/run/secrets/kubernetes.io/serviceaccount/token`},
		{file: "token-file.yaml", allowPlugins: true, wantErr: `reads tokenFile from the file`},
		{file: "ca-file.yaml", wantErr: `cluster "east" reads certificate-authority from the file files/ca.crt`},
		{file: "client-cert-file.yaml", wantErr: "from the file files/ca.crt"},
		// An unverified apiserver: anyone on the path can feed forged
		// endpoints. Only --allow-kubeconfig-insecure-tls accepts it.
		{file: "insecure.yaml", wantErr: `cluster "east" sets insecure-skip-tls-verify: its apiserver's certificate would not be checked; give certificate-authority-data (or pass --allow-kubeconfig-insecure-tls, test clusters only)`},
		{file: "insecure.yaml", allowPlugins: true, wantErr: `sets insecure-skip-tls-verify`},
		{file: "insecure.yaml", insecureTLS: true, wantHost: "https://east.example.com:6443"},
		// Proxies client-go supports are fine; other schemes are refused.
		{file: "proxy-http.yaml", wantHost: "https://east.example.com:6443"},
		{file: "proxy-socks5.yaml", wantHost: "https://east.example.com:6443"},
		{file: "proxy-file.yaml", wantErr: `cluster "east": proxy-url "file:///var/run/secrets/kubernetes.io/serviceaccount/token": scheme "file" is not http, https or socks5`},
		{file: "proxy-noscheme.yaml", wantErr: `cluster "east": proxy-url "proxy.corp.example:3128": scheme "proxy.corp.example" is not http, https or socks5`},
	} {
		name := strings.TrimSuffix(tc.file, ".yaml")
		if tc.context != "" {
			name += "/context=" + tc.context
		}
		if tc.allowPlugins {
			name += "/plugins"
		}
		if tc.insecureTLS {
			name += "/insecure-tls"
		}
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "kubeconfig", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			rc, err := LoadKubeconfig(data, tc.context, Trust{AllowPlugins: tc.allowPlugins, AllowInsecureTLS: tc.insecureTLS})
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("loaded (host %s), want error %q", rc.Host, tc.wantErr)
				}
				t.Log(err)
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q, want it to contain %q", err, tc.wantErr)
				}
				if got := errors.Is(err, ErrPluginRefused); got != tc.wantPlugin {
					t.Errorf("errors.Is(err, ErrPluginRefused) = %v, want %v", got, tc.wantPlugin)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rc.Host != tc.wantHost {
				t.Errorf("host %q, want %q", rc.Host, tc.wantHost)
			}
		})
	}
}

func TestLoadKubeconfigCredentials(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "kubeconfig", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := LoadKubeconfig(data, "", Trust{})
	if err != nil {
		t.Fatal(err)
	}
	if rc.BearerToken != "east-token" || !strings.Contains(string(rc.CAData), "east") {
		t.Errorf("token %q, CA %q", rc.BearerToken, rc.CAData)
	}
	if rc.ExecProvider != nil || rc.AuthProvider != nil {
		t.Error("plugins in an inline kubeconfig")
	}

	data, err = os.ReadFile(filepath.Join("testdata", "kubeconfig", "exec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rc, err = LoadKubeconfig(data, "", Trust{AllowPlugins: true})
	if err != nil {
		t.Fatal(err)
	}
	if rc.ExecProvider == nil || rc.ExecProvider.Command != "aws" {
		t.Errorf("exec provider %+v", rc.ExecProvider)
	}
}

func TestLoadKubeconfigFile(t *testing.T) {
	dir := filepath.Join("testdata", "kubeconfig")
	// Paths relative to the kubeconfig's folder are read into the config.
	rc, err := LoadKubeconfigFile(filepath.Join(dir, "client-cert-file.yaml"), "", Trust{})
	if err != nil {
		t.Fatal(err)
	}
	for what, got := range map[string][]byte{"CA": rc.CAData, "client certificate": rc.CertData, "client key": rc.KeyData} {
		if !strings.Contains(string(got), "fixture") {
			t.Errorf("%s not read from its file: %q", what, got)
		}
	}
	if rc.CAFile != "" || rc.CertFile != "" || rc.KeyFile != "" {
		t.Errorf("file paths left in the config: %q %q %q", rc.CAFile, rc.CertFile, rc.KeyFile)
	}

	// An operator's own file may name a token file (a projected token).
	rc, err = LoadKubeconfigFile(filepath.Join(dir, "token-file-relative.yaml"), "", Trust{})
	if err != nil {
		t.Fatal(err)
	}
	if abs, _ := filepath.Abs(filepath.Join(dir, "files", "token")); rc.BearerTokenFile != abs || strings.TrimSpace(rc.BearerToken) != "file-token" {
		t.Errorf("token file %q (token %q), want %s", rc.BearerTokenFile, rc.BearerToken, abs)
	}
	// The same file given as data is refused.
	data, err := os.ReadFile(filepath.Join(dir, "token-file-relative.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKubeconfig(data, "", Trust{AllowPlugins: true}); err == nil {
		t.Error("LoadKubeconfig read a token file")
	}

	for file, want := range map[string]string{
		"exec.yaml":      `user "eks-admin" runs the exec plugin "aws"`,
		"no-server.yaml": `cluster "east" has no server`,
		"missing.yaml":   "no such file",
	} {
		_, err := LoadKubeconfigFile(filepath.Join(dir, file), "", Trust{})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: error %v, want one naming the file and containing %q", file, err, want)
		}
	}
}
