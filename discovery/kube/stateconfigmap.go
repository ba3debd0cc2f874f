package kube

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// ErrNotWriter is returned by a store's Save on a replica that does not
// write (not the leader); the state is not saved, and that is no failure.
var ErrNotWriter = errors.New("this replica does not write member states")

// ConfigMapStateKey is the key of a state in its ConfigMap's binaryData:
// the state document, gzipped (a ConfigMap holds at most 1 MiB).
const ConfigMapStateKey = "state.json.gz"

// configMapMaxBytes bounds a state's compressed size: a ConfigMap's limit,
// with room for its metadata.
const configMapMaxBytes = 1000 << 10

// ConfigMapStore keeps each member's state in the ConfigMap
// horizon-state-<member> of Namespace in the control plane's cluster, so
// that every replica, and a replica on another node after its pod was
// recreated, reads it. Only the replica for which Writer returns true
// writes (the MCS controller's leader); a nil Writer always writes.
type ConfigMapStore struct {
	Kube      kubernetes.Interface
	Namespace string
	Writer    func() bool
	// MaxBytes bounds a state's decompressed size (0: DefaultStateMaxBytes).
	MaxBytes int
	// Timeout bounds each API call (0: 10s).
	Timeout time.Duration
}

// LabelMemberState labels a state ConfigMap with its member.
const LabelMemberState = "discovery.horizon.io/member-state"

// ConfigMapName is the name of a member's state ConfigMap.
func ConfigMapName(member string) string { return "horizon-state-" + member }

func (c *ConfigMapStore) max() int {
	if c.MaxBytes > 0 {
		return c.MaxBytes
	}
	return DefaultStateMaxBytes
}

func (c *ConfigMapStore) ctx() (context.Context, context.CancelFunc) {
	t := c.Timeout
	if t == 0 {
		t = 10 * time.Second
	}
	return context.WithTimeout(context.Background(), t)
}

func (c *ConfigMapStore) name(member string) (string, error) {
	if err := checkMemberName(member); err != nil {
		return "", err
	}
	name := ConfigMapName(member)
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("member %q: ConfigMap name %q: %v", member, name, errs)
	}
	return name, nil
}

// Load reads a member's state; (nil, nil) when it has no ConfigMap.
func (c *ConfigMapStore) Load(member string) (*MemberState, error) {
	name, err := c.name(member)
	if err != nil {
		return nil, err
	}
	origin := "ConfigMap " + c.Namespace + "/" + name
	ctx, cancel := c.ctx()
	defer cancel()
	cm, err := c.Kube.CoreV1().ConfigMaps(c.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, &StateError{Origin: origin, Reason: StateIO, Err: err}
	}
	gz, ok := cm.BinaryData[ConfigMapStateKey]
	if !ok {
		return nil, &StateError{Origin: origin, Reason: StateCorrupt, Err: fmt.Errorf("no binaryData key %s", ConfigMapStateKey)}
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, &StateError{Origin: origin, Reason: StateCorrupt, Err: err}
	}
	b, err := io.ReadAll(io.LimitReader(zr, int64(c.max())+1))
	if err != nil {
		return nil, &StateError{Origin: origin, Reason: StateCorrupt, Err: err}
	}
	return DecodeState(origin, member, b, c.max())
}

// Save writes a member's state if this replica writes (else ErrNotWriter).
func (c *ConfigMapStore) Save(s *MemberState) error {
	if c.Writer != nil && !c.Writer() {
		return ErrNotWriter
	}
	name, err := c.name(s.Member)
	if err != nil {
		return err
	}
	b, err := EncodeState(s, c.max())
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if buf.Len() > configMapMaxBytes {
		return fmt.Errorf("member %s: state is %d bytes gzipped, more than a ConfigMap holds (%d)", s.Member, buf.Len(), configMapMaxBytes)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	cms := c.Kube.CoreV1().ConfigMaps(c.Namespace)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: map[string]string{
			"app.kubernetes.io/part-of": "horizon", LabelManagedBy: "horizon", LabelMemberState: s.Member,
		}},
		BinaryData: map[string][]byte{ConfigMapStateKey: buf.Bytes()},
	}
	// An update without a resourceVersion replaces the ConfigMap whole.
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("member %s: ConfigMap %s/%s: %w", s.Member, c.Namespace, name, err)
	}
	return nil
}
