package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// CompactEtcd compacts the cluster's etcd at its current revision and
// returns that revision: every watch resumed from an older resource version
// is answered 410 Gone ("too old resource version"), and its client must
// relist. It uses etcd's JSON gateway to its v3 API
// (https://etcd.io/docs/v3.6/dev-guide/api_grpc_gateway/), so the suite
// needs no etcd client.
func (c *Cluster) CompactEtcd(ctx context.Context) (int64, error) {
	u := c.env.ControlPlane.Etcd.URL
	if u == nil {
		return 0, fmt.Errorf("cluster %s: etcd has no client URL", c.Name)
	}
	// A range over one key answers with the store's current revision.
	var rng struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if err := etcdPost(ctx, u.String()+"/v3/kv/range", map[string]any{"key": []byte("/")}, &rng); err != nil {
		return 0, fmt.Errorf("cluster %s: etcd revision: %w", c.Name, err)
	}
	rev, err := strconv.ParseInt(rng.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cluster %s: etcd revision %q: %w", c.Name, rng.Header.Revision, err)
	}
	if err := etcdPost(ctx, u.String()+"/v3/kv/compaction", map[string]any{"revision": rev, "physical": true}, nil); err != nil {
		return 0, fmt.Errorf("cluster %s: compact etcd at %d: %w", c.Name, rev, err)
	}
	return rev, nil
}

func etcdPost(ctx context.Context, url string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, buf.Bytes())
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(buf.Bytes(), out)
}
