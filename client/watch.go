package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HeaderFeed names, in a change-feed answer, the change log its positions
// belong to (the region's actor).
const HeaderFeed = "X-Geo-Feed"

// Change is one event of a region's change feed: a change the region
// applied (a local write, or a replicated event that changed the record)
// to a key under the watched prefix.
type Change struct {
	// Position is the change's place in the region's change log (the
	// event's id): it grows with every change the region applies.
	Position uint64 `json:"position"`
	// Feed names the change log the position belongs to (the region's
	// actor, header X-Geo-Feed); positions mean nothing in another feed.
	Feed string `json:"feed"`
	Key  string `json:"key"`
	// Origin is the region that made the version the change concerns.
	Origin string `json:"origin"`
	// Dot names that version, "actor:counter".
	Dot string `json:"dot"`
	// Versions is the key's frontier, tombstones included, as the region
	// held it when it sent the event: the change and whatever changed the
	// key since (as Meta shows it).
	Versions []Version `json:"versions"`
}

// A WatchOption adjusts Watch.
type WatchOption func(*watchSettings)

type watchSettings struct {
	feed   string
	after  uint64
	resume bool
	idle   time.Duration
}

// ResumeAfter makes the watch start after position of the change log feed
// (a Change's Position and Feed), instead of from the newest change: it
// gets every change after that one and none before. It is opened at the
// client's endpoints in order until one serves that feed (feed "" takes
// the first that answers); when none does, the watch fails with
// ErrFeedChanged.
func ResumeAfter(feed string, position uint64) WatchOption {
	return func(w *watchSettings) { w.feed, w.after, w.resume = feed, position, true }
}

// WatchIdleTimeout sets how long a watch waits for any data (an event or
// a heartbeat, which a region sends every watch.heartbeat, 5s by default)
// before it takes the connection for dead and reconnects. Default 30s.
func WatchIdleTimeout(d time.Duration) WatchOption {
	return func(w *watchSettings) { w.idle = d }
}

// Watch follows the change feed of one region (GET /v1/watch): every
// change it applies to a key under prefix ("" for all keys), in the order
// it applied them (so each origin's changes in that origin's order; see
// the README for what holds across origins), from the newest change on or
// from ResumeAfter's position.
//
// The first stream opens at the client's endpoint in use, moving to the
// next one like any call when it cannot be opened. From then on the watch
// stays with that region, whose positions it holds: when the stream breaks
// (a network failure, the region restarting, a slow_consumer cut, no data
// for WatchIdleTimeout) it reconnects there by itself, with the client's
// backoff (Retry's BaseDelay doubling to MaxDelay, with jitter, without a
// limit on attempts), and resumes after the last position it saw
// (Last-Event-ID): no change is skipped or repeated.
//
// The iteration yields each change with a nil error, and ends after
// yielding an error that reconnecting cannot fix: a *PositionGoneError
// (the region no longer keeps the changes after the position: re-read the
// keys followed, then watch again), a *PositionAheadError or
// ErrFeedChanged (the region's change log is not the one the position
// belongs to), an error answer such as *BadPrefixError or
// *UnauthenticatedError, or the context's error when ctx ends. Breaking
// out of the loop closes the stream.
func (c *Client) Watch(ctx context.Context, prefix string, opts ...WatchOption) iter.Seq2[Change, error] {
	ws := watchSettings{idle: 30 * time.Second}
	for _, o := range opts {
		o(&ws)
	}
	return func(yield func(Change, error) bool) {
		w := &watcher{c: c, prefix: prefix, s: ws, feed: ws.feed, pos: ws.after, hasPos: ws.resume, ep: -1}
		w.run(ctx, yield)
	}
}

// watcher is one Watch iteration's state.
type watcher struct {
	c      *Client
	prefix string
	s      watchSettings
	// feed and pos: the change log followed and the last position seen
	// (hasPos once known); ep is the endpoint serving feed (-1 before the
	// first stream).
	feed   string
	pos    uint64
	hasPos bool
	ep     int
}

// errStopped: the caller broke out of the loop.
var errStopped = errors.New("watch stopped")

// retryable marks a stream failure after which the watch reconnects.
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

func (w *watcher) run(ctx context.Context, yield func(Change, error) bool) {
	n := len(w.c.eps.urls)
	next := w.c.eps.start(time.Now()) // the endpoint of the first stream
	failures := 0                     // streams failed in a row (rounds, before the first)
	tried, mismatched := 0, 0         // endpoints tried in this round, and those serving another feed
	for {
		ep := w.ep
		if ep < 0 {
			ep = next
		}
		delivered, err := w.stream(ctx, ep, yield)
		var r retryable
		switch {
		case errors.Is(err, errStopped):
			return
		case ctx.Err() != nil:
			yield(Change{}, fmt.Errorf("watch %q: %w", w.prefix, context.Cause(ctx)))
			return
		case !errors.As(err, &r):
			yield(Change{}, err)
			return
		}
		if delivered {
			failures = 0
		}
		if w.ep < 0 { // no stream yet: the next endpoint at once, then back off
			if errors.Is(err, ErrFeedChanged) {
				mismatched++
			}
			next, tried = (next+1)%n, tried+1
			if tried < n {
				continue
			}
			if mismatched == n {
				yield(Change{}, r.err)
				return
			}
			tried, mismatched = 0, 0
		}
		failures++
		if err := w.backoff(ctx, failures); err != nil {
			yield(Change{}, fmt.Errorf("watch %q: %w (last: %v)", w.prefix, err, r.err))
			return
		}
	}
}

// backoff waits before reconnecting: a random time up to
// min(MaxDelay, BaseDelay * 2^(failures-1)).
func (w *watcher) backoff(ctx context.Context, failures int) error {
	ceiling := w.c.retry.MaxDelay
	if failures < 30 {
		if d := w.c.retry.BaseDelay << (failures - 1); d > 0 && d < ceiling {
			ceiling = d
		}
	}
	t := time.NewTimer(time.Duration(rand.Float64() * float64(ceiling)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// stream opens one stream at endpoint ep and reads it until it ends. It
// reports whether it delivered anything (a change or a position), and why
// it ended: errStopped, a retryable failure, or a final error.
func (w *watcher) stream(ctx context.Context, ep int, yield func(Change, error) bool) (delivered bool, err error) {
	base := w.c.eps.urls[ep]
	path := "/v1/watch"
	if w.prefix != "" {
		path += "?prefix=" + url.QueryEscape(w.prefix)
	}
	r := &request{method: http.MethodGet, path: path, header: http.Header{}}
	if w.hasPos {
		r.header.Set("Last-Event-ID", strconv.FormatUint(w.pos, 10))
	}
	r.header.Set("Accept", "text/event-stream")
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The idle timer cuts a connection on which nothing arrives: opening
	// included, then between lines.
	idle := time.AfterFunc(w.s.idle, cancel)
	defer idle.Stop()
	resp, err := w.c.open(sctx, base, r)
	if err != nil {
		if errors.Is(err, ErrTooManyRedirects) || errors.Is(err, ErrInsecureRedirect) {
			return false, fmt.Errorf("watch at %s: %w", base, err)
		}
		return false, retryable{fmt.Errorf("watch at %s: %w", base, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes)) //nolint:errcheck // what was read
		aerr := newAnswerError(resp.StatusCode, resp.Header, body, origin(resp.Request.URL))
		code := ""
		if ae := (*APIError)(nil); errors.As(aerr, &ae) {
			code = ae.Code
		}
		if answerVerdict(resp.StatusCode, code, false) == retry {
			return false, retryable{aerr}
		}
		return false, aerr
	}
	if feed := resp.Header.Get(HeaderFeed); w.feed != "" && feed != w.feed {
		err := fmt.Errorf("watch at %s: %w: serving %q, the positions are of %q", base, ErrFeedChanged, feed, w.feed)
		if w.ep < 0 {
			return false, retryable{err} // another endpoint may serve it
		}
		return false, err
	} else if w.feed == "" {
		w.feed = feed
	}
	w.ep = ep
	w.c.eps.answered(ep, time.Now())

	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var id, event string
	var hasID bool
	var data []string
	for {
		line, err := readLine(br)
		if err != nil {
			return delivered, retryable{fmt.Errorf("watch at %s: stream broken: %w", base, err)}
		}
		idle.Reset(w.s.idle)
		switch {
		case line != "":
			if strings.HasPrefix(line, ":") {
				delivered = true // a comment: the heartbeat
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id, hasID = value, true
			case "event":
				event = value
			case "data":
				data = append(data, value)
			}
			continue
		}
		// A blank line ends a block.
		blockID, blockEvent, blockData := id, event, strings.Join(data, "\n")
		hasBlockID := hasID
		id, event, hasID, data = "", "", false, nil
		if event := blockEvent; event == "error" {
			aerr := newAnswerError(http.StatusOK, nil, []byte(blockData), origin(resp.Request.URL))
			var gone *PositionGoneError
			var ahead *PositionAheadError
			if errors.As(aerr, &gone) || errors.As(aerr, &ahead) {
				return delivered, aerr
			}
			return delivered, retryable{aerr} // slow_consumer, shutting_down, ...
		}
		var pos uint64
		if hasBlockID {
			if pos, err = strconv.ParseUint(blockID, 10, 64); err != nil {
				return delivered, fmt.Errorf("watch at %s: event id %q is not a position", base, blockID)
			}
		}
		if blockData == "" {
			if hasBlockID { // a position without a change
				w.pos, w.hasPos = pos, true
			}
			continue
		}
		ch := Change{Position: pos, Feed: w.feed}
		if err := json.Unmarshal([]byte(blockData), &ch); err != nil || !hasBlockID {
			return delivered, fmt.Errorf("watch at %s: event %q at %q is not a change: %v", base, blockData, blockID, err)
		}
		w.pos, w.hasPos, delivered = pos, true, true
		if !yield(ch, nil) {
			return delivered, errStopped
		}
	}
}

// readLine reads one line of an event stream without its end (LF, CRLF or
// CR-less), up to maxAnswerBytes.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxAnswerBytes {
			return "", fmt.Errorf("line over %d bytes", maxAnswerBytes)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
	}
}
