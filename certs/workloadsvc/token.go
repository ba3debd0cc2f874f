package workloadsvc

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Join tokens. A join token lets the holder register one instance (or
// several, each with its address) of ONE workload group until it expires:
//
//	hzjoin.v1.<payload>.<mac>
//
// payload is base64url JSON {"td": trust domain, "grp": "ns/name", "iat",
// "exp": Unix seconds}; mac is base64url HMAC-SHA256 of "hzjoin.v1.<payload>"
// under the join key, 32 random bytes kept in the CA directory
// (JoinKeyFile). Only the holder of the key (`horizon serve` with that
// --ca-dir, and `horizon workload token`) can make one; a token from another
// key is foreign and refused.

// JoinKeyFile is the join key's file name in the CA directory.
const JoinKeyFile = "join-token.key"

// tokenPrefix starts every join token.
const tokenPrefix = "hzjoin.v1."

// MaxTokenTTL is the longest life of a join token.
const MaxTokenTTL = 30 * 24 * time.Hour

// IsJoinToken reports whether s has the shape of a join token.
func IsJoinToken(s string) bool { return strings.HasPrefix(s, tokenPrefix) }

// Claims are what a join token says.
type Claims struct {
	TrustDomain string `json:"td"`
	Group       string `json:"grp"`
	IssuedAt    int64  `json:"iat"`
	Expires     int64  `json:"exp"`
}

// Token errors, each a refusal reason.
var (
	ErrTokenMalformed = errors.New("not a join token")
	ErrTokenForeign   = errors.New("join token not signed by this Horizon's join key")
	ErrTokenExpired   = errors.New("join token expired")
)

// IssueToken makes a join token for group (namespace/name) valid for ttl
// from now.
func IssueToken(key []byte, trustDomain, group string, ttl time.Duration, now time.Time) (string, error) {
	if ttl <= 0 || ttl > MaxTokenTTL {
		return "", fmt.Errorf("ttl %s: want more than 0 and at most %s", ttl, MaxTokenTTL)
	}
	ns, name, ok := strings.Cut(group, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("group %q: want namespace/name", group)
	}
	body, err := json.Marshal(Claims{TrustDomain: trustDomain, Group: group, IssuedAt: now.Unix(), Expires: now.Add(ttl).Unix()})
	if err != nil {
		return "", err
	}
	signed := tokenPrefix + base64.RawURLEncoding.EncodeToString(body)
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac(key, signed)), nil
}

func mac(key []byte, s string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s))
	return h.Sum(nil)
}

// maxTokenLen bounds what VerifyToken reads.
const maxTokenLen = 1024

// VerifyToken checks a join token's MAC, trust domain and expiry at now,
// and returns its claims.
func VerifyToken(key []byte, trustDomain, token string, now time.Time) (Claims, error) {
	if len(token) > maxTokenLen || !IsJoinToken(token) {
		return Claims{}, ErrTokenMalformed
	}
	i := strings.LastIndexByte(token, '.')
	signed, sig := token[:i], token[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrTokenMalformed
	}
	if !hmac.Equal(got, mac(key, signed)) {
		return Claims{}, ErrTokenForeign
	}
	body, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(signed, tokenPrefix))
	if err != nil {
		return Claims{}, ErrTokenMalformed
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil || c.Group == "" {
		return Claims{}, ErrTokenMalformed
	}
	if c.TrustDomain != trustDomain {
		return Claims{}, fmt.Errorf("%w: for trust domain %q", ErrTokenForeign, c.TrustDomain)
	}
	if !now.Before(time.Unix(c.Expires, 0)) {
		return Claims{}, fmt.Errorf("%w at %s", ErrTokenExpired, time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}

// ErrNoJoinKey marks a join key that is missing and could not be made (the
// directory is read-only, as a mounted Secret is).
var ErrNoJoinKey = errors.New("no join key")

// LoadJoinKey reads the join key from dir, creating it (mode 0600) when
// create is set and there is none.
func LoadJoinKey(dir string, create bool) ([]byte, error) {
	path := filepath.Join(dir, JoinKeyFile)
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return LoadJoinKey(dir, false) // made by another process meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s is missing and cannot be made: %w", ErrNoJoinKey, path, err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("join key: %w", err)
		}
		return key, f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("join key: %w", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("join key %s: %d bytes, want at least 32", path, len(key))
	}
	return key, nil
}
