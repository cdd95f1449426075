package client

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
)

// get runs a GET that is not about one key and decodes its answer into
// dst. Retried like a read.
// GetJSON GETs an API path (with its query) and decodes the 200 answer
// into dst, with the client's endpoints, retries and credentials: for the
// endpoints this package does not wrap (admin and diagnostic ones). An
// error answer is returned as the typed error of its code.
func (c *Client) GetJSON(ctx context.Context, path string, dst any) error {
	return c.getJSON(ctx, path, dst)
}

func (c *Client) getJSON(ctx context.Context, path string, dst any) error {
	a, err := c.do(ctx, &request{method: http.MethodGet, path: path})
	if err != nil {
		return err
	}
	if err := a.err(); err != nil {
		return err
	}
	if err := json.Unmarshal(a.body, dst); err != nil {
		return fmt.Errorf("GET %s: decode the answer from %s: %w", path, a.endpoint, err)
	}
	return nil
}

// List returns one page of live keys in byte order (GET /v1/kv). A page
// with Next set has more after it; Keys walks them all.
func (c *Client) List(ctx context.Context, q ListQuery) (KeyPage, error) {
	v := url.Values{}
	if q.Prefix != "" {
		v.Set("prefix", q.Prefix)
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := "/v1/kv"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var p KeyPage
	return p, c.getJSON(ctx, path, &p)
}

// Keys iterates over every live key with prefix, in byte order, a page at
// a time; an error ends the iteration after yielding it.
func (c *Client) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		q := ListQuery{Prefix: prefix}
		for {
			p, err := c.List(ctx, q)
			if err != nil {
				yield("", err)
				return
			}
			for _, k := range p.Keys {
				if !yield(k, nil) {
					return
				}
			}
			if p.Next == "" {
				return
			}
			q.After = p.Next
		}
	}
}

// Conflicts returns entries of the conflict log of the region that
// answers, newest first (GET /v1/conflicts).
func (c *Client) Conflicts(ctx context.Context, q ConflictQuery) ([]ConflictEntry, error) {
	v := url.Values{}
	if q.Key != "" {
		v.Set("key", q.Key)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := "/v1/conflicts"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var log struct {
		Conflicts []ConflictEntry `json:"conflicts"`
	}
	return log.Conflicts, c.getJSON(ctx, path, &log)
}

// Status returns the replication state of the region that answers (its
// Region field says which: after a failover, not the first endpoint's).
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.getJSON(ctx, "/v1/status", &s)
}

// DeploymentStatus returns the answering region's status with every other
// region's, as that region reads them (GET /v1/status?peers=true): the
// whole deployment from one endpoint.
func (c *Client) DeploymentStatus(ctx context.Context) (Status, error) {
	var s Status
	return s, c.getJSON(ctx, "/v1/status?peers=true", &s)
}

// Health checks that the endpoint the client uses serves (GET /healthz):
// nil, or the answer's error (503 shutting_down) or the transport's.
// Retried like a read.
func (c *Client) Health(ctx context.Context) error {
	var h struct {
		Status string `json:"status"`
	}
	return c.getJSON(ctx, "/healthz", &h)
}

// PauseLink stops the answering region's inbound link from peer (an admin
// action; the link's consumer stays, nothing is missed). Give the client
// only endpoints of the region meant. Retried like a write, though pausing
// twice is harmless.
func (c *Client) PauseLink(ctx context.Context, peer string) (LinkStatus, error) {
	return c.linkAction(ctx, peer, "pause")
}

// ResumeLink restarts a link PauseLink stopped.
func (c *Client) ResumeLink(ctx context.Context, peer string) (LinkStatus, error) {
	return c.linkAction(ctx, peer, "resume")
}

func (c *Client) linkAction(ctx context.Context, peer, action string) (LinkStatus, error) {
	path := "/v1/admin/links/" + url.PathEscape(peer) + "/" + action
	a, err := c.do(ctx, &request{method: http.MethodPost, path: path, write: true})
	if err != nil {
		return LinkStatus{}, err
	}
	if err := a.err(); err != nil {
		return LinkStatus{}, err
	}
	var l LinkStatus
	if err := json.Unmarshal(a.body, &l); err != nil {
		return LinkStatus{}, fmt.Errorf("POST %s: decode the answer from %s: %w", path, a.endpoint, err)
	}
	return l, nil
}
