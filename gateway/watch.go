package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/store"
)

// HeaderFeed names, in a change-feed answer, the change log its positions
// belong to (the region's actor): a client resuming elsewhere, or after the
// region's store was replaced, sees another value and must not resume by
// position.
const HeaderFeed = "X-Geo-Feed"

// feedPage is how many changes one read of the change log looks at, and
// flushBytes how much a stream buffers before it writes.
const (
	feedPage   = 256
	flushBytes = 64 << 10
)

// changeEvent is the data of one change-feed event.
type changeEvent struct {
	Key string `json:"key"`
	// Origin is the region that made the version the change concerns.
	Origin string `json:"origin"`
	// Dot names that version ("actor:counter", as ?meta=true shows it).
	Dot string `json:"dot"`
	// Versions is the key's frontier when the event was sent, as
	// ?meta=true shows it: the change and whatever changed the key since.
	Versions []metaVersion `json:"versions"`
}

// watchFeed serves GET /v1/watch for one node: each request streams the
// store's change log (store.ReadFeed) from its position, waking on commits
// (store.FeedWait). A watcher only reads: writes and applies never wait
// for it, however slow it is.
type watchFeed struct {
	n *Node

	stopOnce, hookOnce sync.Once
	// stop is closed when the HTTP server starts shutting down: streams
	// end with a shutting_down event instead of holding Shutdown up.
	stop chan struct{}

	watchers    prometheus.Gauge
	events      prometheus.Counter
	disconnects *prometheus.CounterVec
}

func newWatchFeed(n *Node) *watchFeed {
	f := &watchFeed{n: n, stop: make(chan struct{})}
	f.watchers = prometheus.NewGauge(prometheus.GaugeOpts{Name: "geogate_watchers", Help: "Open change-feed streams (GET /v1/watch)."})
	f.events = prometheus.NewCounter(prometheus.CounterOpts{Name: "geogate_watch_events_total", Help: "Change-feed events sent."})
	f.disconnects = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_watch_disconnects_total",
		Help: "Change-feed streams the region ended, by reason (slow_consumer, write_timeout, position_gone, position_ahead, shutting_down, error)."}, []string{"reason"})
	n.metrics.reg.MustRegister(f.watchers, f.events, f.disconnects)
	return f
}

// parseFeedPosition reads where a stream resumes: Last-Event-ID (what an
// EventSource sends when it reconnects), else the query's after; none
// means from the newest change on.
func parseFeedPosition(r *http.Request) (after uint64, resume bool, err error) {
	s, what := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if s == "" {
		s, what = r.URL.Query().Get("after"), "after"
	}
	if s == "" {
		return 0, false, nil
	}
	after, err = strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, false, errorf(http.StatusBadRequest, "bad_position", "%s must be a change-feed position (a whole number from an event's id), got %q", what, s)
	}
	return after, true, nil
}

func (f *watchFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	if prefix != "" {
		if err := validateKey(prefix); err != nil {
			writeError(w, errorf(http.StatusBadRequest, "bad_prefix", "prefix: %v", err))
			return
		}
	}
	after, resume, err := parseFeedPosition(r)
	if err != nil {
		writeError(w, err)
		return
	}
	// The hook first, then the check: Close sets closing before Shutdown
	// runs the hooks, so a stream that sees closing unset is ended by it.
	f.hookOnce.Do(func() { f.n.server.RegisterOnShutdown(f.shutdown) })
	if f.n.closing.Load() {
		writeError(w, store.ErrClosed)
		return
	}
	if !resume {
		after = f.n.store.FeedHead()
	}
	f.watchers.Inc()
	defer f.watchers.Dec()
	s := &stream{f: f, w: w, rc: http.NewResponseController(w), prefix: prefix, cursor: after, sent: after}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // proxies: do not buffer the stream
	h.Set(HeaderFeed, f.n.store.Actor())
	w.WriteHeader(http.StatusOK)
	// The position first, as an id without data: an EventSource (and
	// client.Watch) that reconnects before any event resumes from here.
	fmt.Fprintf(&s.buf, "retry: 1000\nid: %d\n\n", after)
	if err := s.flush(); err != nil {
		return
	}
	reason, err := s.run(r)
	if reason != "" {
		f.disconnects.WithLabelValues(reason).Inc()
		f.n.log.Debug("change-feed stream ended", "reason", reason, "err", err, "prefix", prefix, "position", s.sent)
	}
}

// shutdown ends every stream (http.Server.Shutdown waits for handlers).
func (f *watchFeed) shutdown() { f.stopOnce.Do(func() { close(f.stop) }) }

// stream is one watcher's state.
type stream struct {
	f      *watchFeed
	w      http.ResponseWriter
	rc     *http.ResponseController
	prefix string
	// cursor is the last position read (matching or not); sent the last
	// id written.
	cursor, sent uint64
	// live is set once the stream has caught up with the newest change:
	// from then on, falling max_lag behind is being slow.
	live bool
	buf  bytes.Buffer
}

// run streams until the client goes, the stream must end (returning the
// reason), or the server shuts down.
func (s *stream) run(r *http.Request) (reason string, err error) {
	n := s.f.n
	heartbeat := time.NewTicker(n.cfg.Watch.Heartbeat)
	defer heartbeat.Stop()
	for {
		page, err := n.store.ReadFeed(s.cursor, s.prefix, feedPage)
		if err != nil {
			return s.fail(err)
		}
		for _, e := range page.Entries {
			if err := s.event(e); err != nil {
				return "error", err
			}
			if s.buf.Len() < flushBytes {
				continue
			}
			if err := s.flush(); err != nil {
				return "write_timeout", err
			}
			if s.slow(e.Pos) {
				return s.slowConsumer(e.Pos)
			}
		}
		s.cursor = page.Next
		if s.buf.Len() > 0 {
			if err := s.flush(); err != nil {
				return "write_timeout", err
			}
		}
		_, next := n.store.FeedWait(s.cursor)
		if next == nil { // more to read
			if s.slow(s.cursor) {
				return s.slowConsumer(s.cursor)
			}
			continue
		}
		s.live = true
		select {
		case <-next:
		case <-heartbeat.C:
			// A stream whose prefix skipped changes moves its id on, so a
			// reconnect does not read them again.
			if s.cursor > s.sent {
				fmt.Fprintf(&s.buf, "id: %d\n\n", s.cursor)
				s.sent = s.cursor
			}
			s.buf.WriteString(": ping\n\n")
			if err := s.flush(); err != nil {
				return "write_timeout", err
			}
		case <-r.Context().Done():
			return "", nil // the client went away
		case <-s.f.stop:
			return s.errorEvent("shutting_down", fmt.Sprintf("region %s is shutting down; reconnect with Last-Event-ID %d once it is back", n.cfg.Region, s.sent), nil)
		}
	}
}

// slow reports whether a stream that has caught up before is now more than
// watch.max_lag changes behind the newest, having sent up to pos.
func (s *stream) slow(pos uint64) bool {
	return s.live && s.f.n.store.FeedHead()-pos > uint64(s.f.n.cfg.Watch.MaxLag)
}

// slowConsumer ends a stream that fell behind.
func (s *stream) slowConsumer(pos uint64) (string, error) {
	maxLag := s.f.n.cfg.Watch.MaxLag
	return s.errorEvent("slow_consumer", fmt.Sprintf("this stream fell %d changes behind the newest (watch.max_lag %d): read faster, or reconnect with Last-Event-ID %d to resume", s.f.n.store.FeedHead()-pos, maxLag, s.sent), nil)
}

// fail ends the stream after a failed read of the change log.
func (s *stream) fail(err error) (string, error) {
	var gone *store.PositionGoneError
	switch {
	case errors.As(err, &gone):
		return s.errorEvent("position_gone", fmt.Sprintf("changes after position %d are no longer kept (the oldest kept is %d, watch.retention %d): re-read the keys you follow, then watch again from now", gone.After, gone.Oldest, s.f.n.cfg.Watch.Retention),
			map[string]any{"after": gone.After, "oldest": gone.Oldest})
	case errors.Is(err, store.ErrPositionAhead):
		return s.errorEvent("position_ahead", fmt.Sprintf("region %s has no change at position %d: the position comes from another region's feed or from before this region's store was replaced; re-read the keys you follow, then watch again from now", s.f.n.cfg.Region, s.cursor),
			map[string]any{"after": s.cursor, "newest": s.f.n.store.FeedHead()})
	case errors.Is(err, store.ErrClosed):
		return s.errorEvent("shutting_down", fmt.Sprintf("region %s is shutting down", s.f.n.cfg.Region), nil)
	}
	_, body := errorBody(err)
	return s.errorEvent(body["code"].(string), fmt.Sprint(body["error"]), nil)
}

// event appends one change's event to the buffer.
func (s *stream) event(e store.FeedEntry) error {
	data, err := json.Marshal(changeEvent{
		Key: e.Key, Origin: conflict.RegionOf(e.Origin), Dot: e.Dot().String(), Versions: metaVersions(e.Record.Versions),
	})
	if err != nil {
		return fmt.Errorf("encode change %d: %w", e.Pos, err)
	}
	fmt.Fprintf(&s.buf, "id: %d\ndata: ", e.Pos)
	s.buf.Write(data)
	s.buf.WriteString("\n\n")
	s.sent = e.Pos
	s.f.events.Inc()
	return nil
}

// errorEvent sends `event: error` with a JSON {"error", "code", ...} and
// ends the stream with code as its reason.
func (s *stream) errorEvent(code, msg string, details map[string]any) (string, error) {
	body := map[string]any{"error": msg, "code": code}
	for k, v := range details {
		body[k] = v
	}
	data, err := json.Marshal(body)
	if err != nil {
		return "error", err
	}
	s.buf.WriteString("event: error\ndata: ")
	s.buf.Write(data)
	s.buf.WriteString("\n\n")
	return code, s.flush()
}

// flush writes the buffer to the client within watch.write_timeout: a
// client that takes nothing for that long is cut off (its connection
// fails), so a stuck watcher holds no more than one write.
func (s *stream) flush() error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.f.n.cfg.Watch.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := s.w.Write(s.buf.Bytes())
	s.buf.Reset()
	if err != nil {
		return err
	}
	return s.rc.Flush()
}
