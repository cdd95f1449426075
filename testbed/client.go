package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/store"
)

// apiClient speaks to each region of a run through its own Go client
// (package client), stateless and without retries: the testbed chooses
// the region of every request, passes the tokens itself and counts every
// failure, so nothing may be retried elsewhere or carried along unasked.
// Redirects are followed, as by any client.
type apiClient struct {
	hc      *http.Client
	regions map[string]*client.Client
}

// newAPIClient returns a client of the regions at urls; sec, when the run
// is secured, makes it trust the run's CA and send its admin token (the
// testbed writes, reads and pauses links).
func newAPIClient(urls map[string]string, timeout time.Duration, conns int, sec *deploy.Material) (*apiClient, error) {
	tr := &http.Transport{MaxIdleConns: conns * max(len(urls), 1), MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second}
	opts := []client.Option{client.WithoutTracking(), client.WithRetry(client.Retry{MaxAttempts: 1}), client.WithAttemptTimeout(0)}
	if sec != nil {
		tr.TLSClientConfig = sec.ClientTLS()
		opts = append(opts, client.WithToken(sec.Tokens[auth.Admin]))
	}
	c := &apiClient{hc: &http.Client{Transport: tr, Timeout: timeout}, regions: map[string]*client.Client{}}
	for region, url := range urls {
		rc, err := client.New([]string{url}, append([]client.Option{client.WithHTTPClient(c.hc)}, opts...)...)
		if err != nil {
			return nil, fmt.Errorf("region %s: %w", region, err)
		}
		c.regions[region] = rc
	}
	return c, nil
}

func (c *apiClient) close() { c.hc.CloseIdleConnections() }

func (c *apiClient) region(name string) (*client.Client, error) {
	rc, ok := c.regions[name]
	if !ok {
		return nil, fmt.Errorf("no region %q", name)
	}
	return rc, nil
}

// reason classifies a request error for counting: "503 stale",
// "transport", "timeout".
func reason(err error) string {
	var ae *client.APIError
	switch {
	case errors.As(err, &ae):
		if ae.Code != "" {
			return fmt.Sprintf("%d %s", ae.Status, ae.Code)
		}
		return strconv.Itoa(ae.Status)
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout"):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "transport"
}

// put writes key at region, blind (no causal context).
func (c *apiClient) put(ctx context.Context, region, key string, value []byte) (client.WriteResult, error) {
	rc, err := c.region(region)
	if err != nil {
		return client.WriteResult{}, err
	}
	return rc.Put(ctx, key, value)
}

// get reads a key and returns the answer's status: 200, 300 and 404 are
// answers, not errors; an error answer's status comes with its error.
func (c *apiClient) get(ctx context.Context, region, key string, opts ...client.CallOption) (int, error) {
	rc, err := c.region(region)
	if err != nil {
		return 0, err
	}
	v, err := rc.Get(ctx, key, opts...)
	var ae *client.APIError
	switch {
	case err == nil && v.HasSiblings():
		return http.StatusMultipleChoices, nil
	case err == nil:
		return http.StatusOK, nil
	case client.IsNotFound(err):
		return http.StatusNotFound, nil
	case errors.As(err, &ae):
		return ae.Status, err
	}
	return 0, err
}

// meta reads every version of key at region.
func (c *apiClient) meta(ctx context.Context, region, key string) (client.Meta, error) {
	rc, err := c.region(region)
	if err != nil {
		return client.Meta{}, err
	}
	return rc.Meta(ctx, key)
}

func (c *apiClient) status(ctx context.Context, region string) (client.Status, error) {
	rc, err := c.region(region)
	if err != nil {
		return client.Status{}, err
	}
	return rc.Status(ctx)
}

func (c *apiClient) healthy(ctx context.Context, region string) bool {
	rc, err := c.region(region)
	return err == nil && rc.Health(ctx) == nil
}

// snapshot writes a snapshot of region (GET /v1/admin/snapshot) to file,
// verified, and returns its record count.
func (c *apiClient) snapshot(ctx context.Context, region, file string) (int64, error) {
	rc, err := c.region(region)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return 0, err
	}
	f, err := os.Create(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := rc.Snapshot(ctx, f); err != nil {
		return 0, fmt.Errorf("backup %s: %w", region, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return 0, err
	}
	info, err := store.VerifySnapshot(f)
	if err != nil {
		return 0, fmt.Errorf("backup %s: %w", region, err)
	}
	return info.Records, nil
}

// aeState reads region's anti-entropy state: rounds run, buckets that
// differed in its last comparisons (summed over peers), and records
// awaiting repair.
func (c *apiClient) aeState(ctx context.Context, region string) (rounds, differing, corrupt int, err error) {
	st, err := c.status(ctx, region)
	if err != nil {
		return 0, 0, 0, err
	}
	ae := st.Lifecycle.AntiEntropy
	for _, n := range ae.Differing {
		differing += n
	}
	return ae.Rounds, differing, len(ae.Corrupt), nil
}

// lifecycle reads the lifecycle part of region's status: records
// anti-entropy repaired and re-seeds done.
func (c *apiClient) lifecycle(ctx context.Context, region string) (LifecycleStats, error) {
	st, err := c.status(ctx, region)
	if err != nil {
		return LifecycleStats{}, err
	}
	l := st.Lifecycle
	out := LifecycleStats{Repaired: l.AntiEntropy.Repaired, Compared: l.AntiEntropy.Compared, Collected: l.Tombstones.Collected}
	for _, r := range l.Reseeds {
		out.Reseeds += r.Reseeds
	}
	return out, nil
}

// linkAdmin pauses or resumes the link from -> region at region.
func (c *apiClient) linkAdmin(ctx context.Context, region, from, action string) error {
	rc, err := c.region(region)
	if err != nil {
		return err
	}
	if action == "pause" {
		_, err = rc.PauseLink(ctx, from)
	} else {
		_, err = rc.ResumeLink(ctx, from)
	}
	return err
}
