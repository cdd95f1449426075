package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// handleSnapshot streams a snapshot of the region (GET /v1/admin/snapshot,
// admin role): every record at one read timestamp with its positions, in
// the store's snapshot format (store.WriteSnapshot), as it is read. The
// body ends with the snapshot's end block; a body cut short (the region
// failed mid-way) lacks it, which `geogate backup` and `geogate restore`
// detect.
func (n *Node) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+n.cfg.Region+`.geosnap"`)
	w.Header().Set("X-Geo-Region", n.cfg.Region)
	// A large snapshot outlives http.write_timeout: extend the deadline.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	start := time.Now()
	info, err := n.store.WriteSnapshot(r.Context(), w)
	if err != nil {
		if info.Bytes == 0 && !errors.Is(err, r.Context().Err()) {
			writeError(w, err)
			return
		}
		// Mid-stream: the status is sent; cutting the body is all that is
		// left, and the reader sees a truncated snapshot.
		n.log.Warn("backup snapshot cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
	n.life.m.snapshotsServed.Inc()
	n.log.Info("backup snapshot served", "records", info.Records, "bytes", info.Bytes, "took", time.Since(start).Round(time.Millisecond))
}

// Reseed starts a re-seed of the inbound link from peer, as
// POST /v1/admin/links/{peer}/reseed does; the result shows in Status
// (Lifecycle.Reseeds). It fails when there is no such link or one runs.
func (n *Node) Reseed(peer string) error {
	if n.link(peer) == nil {
		return fmt.Errorf("region %s has no link from %q", n.cfg.Region, peer)
	}
	return n.life.forceReseed(peer)
}

// handleReseed starts a re-seed of the link from peer (POST
// /v1/admin/links/{peer}/reseed): 202 with the link's status; the link
// shows "reseeding" until the snapshot is merged, and
// GET /v1/status lifecycle.reseeds.<peer> has the result.
func (n *Node) handleReseed(w http.ResponseWriter, r *http.Request) {
	peer := r.PathValue("peer")
	l := n.link(peer)
	if l == nil {
		writeError(w, errorf(http.StatusNotFound, "no_link", "region %s has no link from %q", n.cfg.Region, peer))
		return
	}
	if err := n.life.forceReseed(peer); err != nil {
		writeError(w, errorf(http.StatusConflict, "reseeding", "%v", err))
		return
	}
	n.log.Info("re-seed requested by admin", "from", peer)
	writeJSON(w, http.StatusAccepted, l.Status())
}
