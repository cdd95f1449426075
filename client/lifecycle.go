package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Snapshot streams a consistent snapshot of the region the client's first
// endpoint names (GET /v1/admin/snapshot, admin role) into w and returns
// the bytes written: every record at one read timestamp with the log
// positions it reflects, in geogate's snapshot format, which `geogate
// restore` reads (the server's store package verifies it:
// store.VerifySnapshot). It makes one attempt at the first endpoint only
// (a snapshot is of one region; a retry would be of another state): an
// error answer comes back typed, a stream cut short as the transport's
// error or, when the body merely ends early, as a snapshot that does not
// verify.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	r := &request{method: http.MethodGet, path: "/v1/admin/snapshot"}
	base := c.eps.urls[0]
	resp, err := c.open(ctx, base, r)
	if err != nil {
		return 0, fmt.Errorf("GET %s at %s: %w", r.path, base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		a := &answer{status: resp.StatusCode, header: resp.Header, body: body, endpoint: origin(resp.Request.URL)}
		if err := a.err(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("GET %s at %s: unexpected status %d", r.path, base, resp.StatusCode)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s at %s: after %d bytes: %w", r.path, base, n, err)
	}
	return n, nil
}

// ReseedLink asks the answering region to re-seed its inbound link from
// peer from a snapshot of the peer (POST /v1/admin/links/{peer}/reseed,
// admin role): it answers at once (202) with the link's status; the link
// shows "reseeding" until the snapshot is merged, and the region's status
// (lifecycle.reseeds) has the result.
func (c *Client) ReseedLink(ctx context.Context, peer string) (LinkStatus, error) {
	return c.linkAction(ctx, peer, "reseed")
}
