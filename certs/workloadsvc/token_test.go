package workloadsvc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestToken: a token verifies under its key and trust domain until it
// expires; a changed byte, another key, another trust domain or a wrong
// shape is refused with its error.
func TestToken(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tok, err := IssueToken(key, "cluster.local", "shop/ratings-vms", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := VerifyToken(key, "cluster.local", tok, now.Add(59*time.Minute))
	if err != nil || c.Group != "shop/ratings-vms" {
		t.Fatalf("claims %+v, err %v", c, err)
	}
	tampered := []byte(tok)
	tampered[len(tokenPrefix)+3] ^= 1
	for name, tc := range map[string]struct {
		key   []byte
		td    string
		token string
		at    time.Time
		want  error
	}{
		"expired":            {key, "cluster.local", tok, now.Add(time.Hour), ErrTokenExpired},
		"other key":          {[]byte(strings.Repeat("x", 32)), "cluster.local", tok, now, ErrTokenForeign},
		"other trust domain": {key, "other.example", tok, now, ErrTokenForeign},
		"tampered":           {key, "cluster.local", string(tampered), now, ErrTokenForeign},
		"not a join token":   {key, "cluster.local", "eyJhbGciOi.x.y", now, ErrTokenMalformed},
		"too long":           {key, "cluster.local", tokenPrefix + strings.Repeat("a", 2000), now, ErrTokenMalformed},
		"signature not b64":  {key, "cluster.local", tok + "!", now, ErrTokenMalformed},
	} {
		if _, err := VerifyToken(tc.key, tc.td, tc.token, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
	for _, bad := range []struct {
		group string
		ttl   time.Duration
	}{{"shop", time.Hour}, {"shop/a/b", time.Hour}, {"shop/a", 0}, {"shop/a", MaxTokenTTL + time.Second}} {
		if _, err := IssueToken(key, "cluster.local", bad.group, bad.ttl, now); err == nil {
			t.Errorf("IssueToken(%q, %s) succeeded", bad.group, bad.ttl)
		}
	}
}

// TestJoinKey: the key is made once, private to its owner, and read back.
func TestJoinKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadJoinKey(dir, false); err == nil {
		t.Error("a missing key loaded without create")
	}
	k1, err := LoadJoinKey(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadJoinKey(dir, true)
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("second load: %v (same key: %t)", err, string(k1) == string(k2))
	}
	st, err := os.Stat(filepath.Join(dir, JoinKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v", st.Mode(), err)
	}
	os.WriteFile(filepath.Join(dir, JoinKeyFile), []byte("short"), 0o600)
	if _, err := LoadJoinKey(dir, false); err == nil {
		t.Error("a 5-byte key loaded")
	}
}
