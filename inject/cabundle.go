package inject

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultCABundleInterval is how often the webhook configuration's
// caBundle is checked: a root rotation, or a Helm upgrade that reset it,
// is repaired within this.
const DefaultCABundleInterval = 30 * time.Second

// CABundle keeps the caBundle of every webhook of one
// MutatingWebhookConfiguration equal to Horizon's root bundle, so that the
// API server trusts the injector's serving certificate.
type CABundle struct {
	Client   kubernetes.Interface // the control plane's cluster
	Name     string               // of the MutatingWebhookConfiguration
	Bundle   func() ([]byte, error)
	Interval time.Duration // 0: DefaultCABundleInterval
	Log      *slog.Logger
}

// Run syncs now and every Interval until ctx ends. A failed sync is
// logged and tried again.
func (c *CABundle) Run(ctx context.Context) error {
	interval := c.Interval
	if interval == 0 {
		interval = DefaultCABundleInterval
	}
	for {
		if err := c.Sync(ctx); err != nil && ctx.Err() == nil {
			c.Log.Warn("injector: caBundle of the webhook configuration not updated", "name", c.Name, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// Sync updates the webhooks whose caBundle differs from the bundle.
func (c *CABundle) Sync(ctx context.Context) error {
	bundle, err := c.Bundle()
	if err != nil {
		return err
	}
	api := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	mwc, err := api.Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get MutatingWebhookConfiguration %s: %w", c.Name, err)
	}
	changed := false
	for i := range mwc.Webhooks {
		if cc := &mwc.Webhooks[i].ClientConfig; !bytes.Equal(cc.CABundle, bundle) {
			cc.CABundle = bundle
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if _, err := api.Update(ctx, mwc, metav1.UpdateOptions{FieldManager: "horizon"}); err != nil {
		return fmt.Errorf("update MutatingWebhookConfiguration %s: %w", c.Name, err)
	}
	c.Log.Info("injector: caBundle of the webhook configuration updated", "name", c.Name, "webhooks", len(mwc.Webhooks))
	return nil
}
