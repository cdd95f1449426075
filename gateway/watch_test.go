package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geogate/geogate/gateway/config"
)

// sseBlock is one blank-line-terminated block of a change-feed stream: an
// event (data set), an id alone, or a comment.
type sseBlock struct {
	id      string
	hasID   bool
	event   string
	data    string
	comment string
}

func (b sseBlock) pos(t testing.TB) uint64 {
	t.Helper()
	p, err := strconv.ParseUint(b.id, 10, 64)
	if err != nil {
		t.Fatalf("id %q is not a position", b.id)
	}
	return p
}

func (b sseBlock) change(t testing.TB) changeEvent {
	t.Helper()
	var c changeEvent
	if err := json.Unmarshal([]byte(b.data), &c); err != nil {
		t.Fatalf("event data %q: %v", b.data, err)
	}
	return c
}

func (b sseBlock) errorBody(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if b.event != "error" || json.Unmarshal([]byte(b.data), &m) != nil {
		t.Fatalf("block %+v is not an error event with a JSON body", b)
	}
	return m
}

// sseStream reads a change-feed answer block by block.
type sseStream struct {
	resp   *http.Response
	blocks chan sseBlock
	done   chan error // the read's end: io.EOF or the failure
	cancel context.CancelFunc
}

// watch opens GET /v1/watch at base; headers alternate name, value. The
// stream is closed when the test ends.
func watch(t testing.TB, base, query string, headers ...string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/watch"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /v1/watch%s: %v", query, err)
	}
	s := &sseStream{resp: resp, blocks: make(chan sseBlock, 1<<16), done: make(chan error, 1), cancel: cancel}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return s
	}
	go func() { s.done <- readSSE(resp.Body, s.blocks) }()
	return s
}

// readSSE parses blocks from r into out until r ends.
func readSSE(r io.Reader, out chan<- sseBlock) error {
	br := bufio.NewReaderSize(r, 1<<16)
	var b sseBlock
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			close(out)
			return err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			b.data = strings.Join(data, "\n")
			out <- b
			b, data = sseBlock{}, nil
		case strings.HasPrefix(line, ":"):
			b.comment = strings.TrimSpace(line[1:])
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				b.id, b.hasID = value, true
			case "event":
				b.event = value
			case "data":
				data = append(data, value)
			}
		}
	}
}

// next returns the next block, failing the test after d.
func (s *sseStream) next(t testing.TB, d time.Duration) sseBlock {
	t.Helper()
	select {
	case b, ok := <-s.blocks:
		if !ok {
			t.Fatalf("stream ended: %v", <-s.done)
		}
		return b
	case <-time.After(d):
		t.Fatalf("no block within %s", d)
	}
	return sseBlock{}
}

// nextEvent skips comments and id-only blocks and returns the next event.
func (s *sseStream) nextEvent(t testing.TB, d time.Duration) sseBlock {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b := s.next(t, time.Until(deadline))
		if b.data != "" || b.event != "" {
			return b
		}
	}
}

// none checks that no event arrives within d (comments and ids may).
func (s *sseStream) none(t testing.TB, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case b, ok := <-s.blocks:
			if ok && (b.data != "" || b.event != "") {
				t.Fatalf("unexpected event %+v", b)
			}
			if !ok {
				return
			}
		case <-timeout:
			return
		}
	}
}

// sameJSON reports whether a and b encode the same JSON value.
func sameJSON(t testing.TB, a, b any) bool {
	t.Helper()
	var x, y any
	for _, p := range []struct {
		v   any
		dst *any
	}{{a, &x}, {b, &y}} {
		j, err := json.Marshal(p.v)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(j, p.dst); err != nil {
			t.Fatal(err)
		}
	}
	return reflect.DeepEqual(x, y)
}

func tuneWatch(f func(w *config.Watch)) func(*ClusterSpec) {
	return func(s *ClusterSpec) { s.Tune = func(c *config.Config) { f(&c.Watch) } }
}

// TestWatchStreamsChanges: a stream sends, for every change to a key under
// its prefix, an event with the change's position as id and the key,
// origin, dot and versions as ?meta=true shows them, in the order applied,
// local writes and replicated ones alike.
func TestWatchStreamsChanges(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", nil)
	base, r1 := c.Node("r1").HTTPURL(), c.Node("r1").Store().Actor()
	do(t, "PUT", base+"/v1/kv/w/before", []byte(`0`)) // position 1, before the stream: not sent
	s := watch(t, base, "?prefix=w/")
	if ct := s.resp.Header.Get("Content-Type"); s.resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("watch answered %d %q", s.resp.StatusCode, ct)
	}
	if feed := s.resp.Header.Get(HeaderFeed); feed != r1 {
		t.Fatalf("%s = %q, want the region's actor %s", HeaderFeed, feed, r1)
	}
	if first := s.next(t, 5*time.Second); !first.hasID || first.pos(t) != 1 || first.data != "" {
		t.Fatalf("first block %+v, want the starting position 1 as an id alone", first)
	}
	expect := func(pos uint64, key, origin, dot string) {
		t.Helper()
		b := s.nextEvent(t, 10*time.Second)
		ev := b.change(t)
		if b.event != "" || b.pos(t) != pos || ev.Key != key || ev.Origin != origin || ev.Dot != dot {
			t.Fatalf("event %+v %+v, want position %d %s from %s, dot %s", b, ev, pos, key, origin, dot)
		}
		meta := do(t, "GET", base+"/v1/kv/"+key+"?meta=true", nil).json(t)
		if !sameJSON(t, ev.Versions, meta["versions"]) {
			t.Fatalf("event versions %+v, want ?meta=true's %v", ev.Versions, meta["versions"])
		}
	}
	do(t, "PUT", base+"/v1/kv/w/1", []byte(`{"a":1}`))
	expect(2, "w/1", "r1", r1+":2")
	do(t, "PUT", base+"/v1/kv/x/1", []byte(`1`)) // position 3, another prefix
	w2 := do(t, "PUT", c.Node("r2").HTTPURL()+"/v1/kv/w/2", []byte(`"from r2"`))
	expect(4, "w/2", "r2", w2.json(t)["dot"].(string))
	do(t, "DELETE", base+"/v1/kv/w/1", nil)
	expect(5, "w/1", "r1", r1+":4")
	if vs := do(t, "GET", base+"/v1/kv/w/1?meta=true", nil).json(t)["versions"].([]any); len(vs) != 1 || !vs[0].(map[string]any)["deleted"].(bool) {
		t.Fatalf("w/1 after the delete: %v", vs)
	}
}

// TestWatchResume: Last-Event-ID (or ?after=) resumes after that position:
// every change after it, none before; a position older than the retained
// log gets an error event position_gone, one beyond the log position_ahead,
// and a malformed one 400.
func TestWatchResume(t *testing.T) {
	c := startCluster(t, []string{"r1"}, "all-to-all", nil, tuneWatch(func(w *config.Watch) { w.Retention = 5 }))
	base := c.Node("r1").HTTPURL()
	for i := 1; i <= 8; i++ {
		do(t, "PUT", fmt.Sprintf("%s/v1/kv/k%d", base, i), []byte(`1`))
	}
	// Retention 5 (plus an eighth, at least one): 1 and 2 are gone.
	if o := c.Node("r1").Store().FeedOldest(); o != 3 {
		t.Fatalf("oldest position %d, want 3", o)
	}
	for _, tc := range []struct {
		name  string
		query string
		hdr   []string
		first uint64
	}{
		{"Last-Event-ID", "", []string{"Last-Event-ID", "5"}, 6},
		{"after", "?after=3", nil, 4},
		{"Last-Event-ID wins over after", "?after=1", []string{"Last-Event-ID", "6"}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := watch(t, base, tc.query, tc.hdr...)
			for want := tc.first; want <= 8; want++ {
				b := s.nextEvent(t, 5*time.Second)
				if b.pos(t) != want || b.change(t).Key != fmt.Sprintf("k%d", want) {
					t.Fatalf("event %+v, want position %d (k%d)", b, want, want)
				}
			}
			s.none(t, 100*time.Millisecond)
		})
	}
	t.Run("position gone", func(t *testing.T) {
		s := watch(t, base, "", "Last-Event-ID", "1")
		e := s.nextEvent(t, 5*time.Second).errorBody(t)
		if e["code"] != "position_gone" || e["oldest"] != 3.0 || e["after"] != 1.0 || !strings.Contains(e["error"].(string), "re-read") {
			t.Fatalf("error event %v, want position_gone with oldest 3", e)
		}
		if _, ok := <-s.blocks; ok {
			t.Fatal("the stream went on after position_gone")
		}
	})
	t.Run("position ahead", func(t *testing.T) {
		s := watch(t, base, "?after=99")
		if e := s.nextEvent(t, 5*time.Second).errorBody(t); e["code"] != "position_ahead" || e["newest"] != 8.0 {
			t.Fatalf("error event %v, want position_ahead", e)
		}
	})
	t.Run("bad position", func(t *testing.T) {
		a := do(t, "GET", base+"/v1/watch", nil, "Last-Event-ID", "abc")
		if a.status != 400 || a.json(t)["code"] != "bad_position" {
			t.Fatalf("Last-Event-ID abc: %d %s", a.status, a.body)
		}
		if a := do(t, "GET", base+"/v1/watch?prefix=%00", nil); a.status != 400 || a.json(t)["code"] != "bad_prefix" {
			t.Fatalf("prefix NUL: %d %s", a.status, a.body)
		}
	})
}

// TestWatchHeartbeat: an idle stream sends ": ping" comments; a stream
// whose prefix skipped changes moves its id on with them, so a reconnect
// does not read them again; the stream outlives the HTTP server's read and
// write timeouts.
func TestWatchHeartbeat(t *testing.T) {
	c := startCluster(t, []string{"r1"}, "all-to-all", nil, func(s *ClusterSpec) {
		s.Tune = func(c *config.Config) {
			c.Watch.Heartbeat = 100 * time.Millisecond
			c.HTTP.ReadTimeout, c.HTTP.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
			c.Sessions.DefaultWait, c.Sessions.MaxWait = 100*time.Millisecond, 200*time.Millisecond
		}
	})
	base := c.Node("r1").HTTPURL()
	s := watch(t, base, "?prefix=mine/")
	s.next(t, 5*time.Second) // the starting id
	if b := s.next(t, 5*time.Second); b.comment != "ping" || b.hasID {
		t.Fatalf("idle stream sent %+v, want a ping", b)
	}
	do(t, "PUT", base+"/v1/kv/other", []byte(`1`)) // position 1, skipped by the prefix
	b := s.next(t, 5*time.Second)
	for b.comment == "ping" {
		b = s.next(t, 5*time.Second)
	}
	if !b.hasID || b.pos(t) != 1 || b.data != "" {
		t.Fatalf("after a skipped change: %+v, want the id moved to 1 without an event", b)
	}
	start := time.Now()
	for time.Since(start) < 4*300*time.Millisecond { // beyond both server timeouts
		if b := s.next(t, 5*time.Second); b.data != "" || b.event != "" {
			t.Fatalf("unexpected %+v", b)
		}
	}
	do(t, "PUT", base+"/v1/kv/mine/1", []byte(`1`))
	if b := s.nextEvent(t, 5*time.Second); b.pos(t) != 2 || b.change(t).Key != "mine/1" {
		t.Fatalf("after the timeouts: %+v, want mine/1 at position 2", b)
	}
}

// rawWatch opens GET /v1/watch on a bare TCP connection with a small
// receive buffer, so that a client that does not read blocks the region's
// writes to it after a few hundred kilobytes.
func rawWatch(t *testing.T, base, query string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /v1/watch%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", query)
	return conn
}

// metricValue reads one sample of the region's /metrics.
func metricValue(t *testing.T, base, sample string) string {
	t.Helper()
	for _, line := range strings.Split(string(do(t, "GET", base+"/metrics", nil).body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// TestWatchSlowConsumer: writes never wait for a watcher. One that had
// caught up and then falls more than watch.max_lag changes behind gets an
// error event slow_consumer and is disconnected; one that takes nothing
// for watch.write_timeout is disconnected.
func TestWatchSlowConsumer(t *testing.T) {
	c := startCluster(t, []string{"r1"}, "all-to-all", nil, tuneWatch(func(w *config.Watch) {
		w.MaxLag = 20
		w.WriteTimeout = 20 * time.Second
	}))
	base := c.Node("r1").HTTPURL()
	conn := rawWatch(t, base, "")
	eventually(t, 5*time.Second, "the watcher", func() bool { return metricValue(t, base, "geogate_watchers") == "1" })
	// 160 changes of 64 KiB each: more than twice what the connection's
	// buffers hold (at most 4 MiB here), all made while the watcher reads
	// nothing.
	value := []byte(`"` + strings.Repeat("x", 64<<10) + `"`)
	start := time.Now()
	for i := range 160 {
		if a := do(t, "PUT", fmt.Sprintf("%s/v1/kv/big/%d", base, i), value); a.status != 200 {
			t.Fatalf("write %d: %d %s", i, a.status, a.body)
		}
	}
	t.Logf("160 writes of 64 KiB with a stalled watcher took %s", time.Since(start))
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	body, err := io.ReadAll(conn) // now read everything: the stream must end with the error
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	i := strings.LastIndex(string(body), "event: error\ndata: ")
	if i < 0 {
		t.Fatalf("no error event in %d bytes; tail %q", len(body), body[max(0, len(body)-300):])
	}
	var e map[string]any
	line, _, _ := strings.Cut(string(body[i+len("event: error\ndata: "):]), "\n")
	if err := json.Unmarshal([]byte(line), &e); err != nil || e["code"] != "slow_consumer" {
		t.Fatalf("error event %q, want slow_consumer", line)
	}
	if got := strings.Count(string(body), "\nid: "); got >= 161 {
		t.Fatalf("%d ids sent: the slow watcher got every change", got)
	}
	if v := metricValue(t, base, `geogate_watch_disconnects_total{reason="slow_consumer"}`); v != "1" {
		t.Fatalf("slow_consumer disconnects = %q, want 1", v)
	}

	t.Run("write timeout", func(t *testing.T) {
		c := startCluster(t, []string{"r1"}, "all-to-all", nil, tuneWatch(func(w *config.Watch) {
			w.WriteTimeout = 300 * time.Millisecond
		}))
		base := c.Node("r1").HTTPURL()
		conn := rawWatch(t, base, "")
		eventually(t, 5*time.Second, "the watcher", func() bool { return metricValue(t, base, "geogate_watchers") == "1" })
		for i := range 80 {
			do(t, "PUT", fmt.Sprintf("%s/v1/kv/big/%d", base, i), value)
		}
		eventually(t, 10*time.Second, "the stalled watcher cut off", func() bool {
			return metricValue(t, base, "geogate_watchers") == "0" &&
				metricValue(t, base, `geogate_watch_disconnects_total{reason="write_timeout"}`) == "1"
		})
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("the connection was not closed: %v", err)
		}
	})
}

// TestWatchShutdown: a region shutting down ends its streams at once with
// an error event shutting_down (the client resumes once it is back).
func TestWatchShutdown(t *testing.T) {
	c := startCluster(t, []string{"r1"}, "all-to-all", nil)
	base := c.Node("r1").HTTPURL()
	do(t, "PUT", base+"/v1/kv/k", []byte(`1`))
	s := watch(t, base, "")
	s.next(t, 5*time.Second)
	start := time.Now()
	if err := c.Stop("r1"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("closing the region with a watcher took %s", took)
	}
	if e := s.nextEvent(t, 5*time.Second).errorBody(t); e["code"] != "shutting_down" || !strings.Contains(e["error"].(string), "Last-Event-ID 1") {
		t.Fatalf("error event %v, want shutting_down naming position 1", e)
	}
}

// feedOf reads a stream's events until the one at position last.
func (s *sseStream) eventsUpTo(t testing.TB, last uint64) []sseBlock {
	t.Helper()
	var out []sseBlock
	for len(out) == 0 || out[len(out)-1].pos(t) < last {
		b := s.nextEvent(t, 10*time.Second)
		if b.event != "" {
			t.Fatalf("error event %+v", b)
		}
		out = append(out, b)
	}
	return out
}

// allApplied reports whether every region has applied every other's log.
func allApplied(c *Cluster) bool {
	for _, a := range c.Nodes() {
		for _, b := range c.Nodes() {
			if a != b && b.Store().Applied()[a.Store().Actor()] < a.Store().Seq() {
				return false
			}
		}
	}
	return true
}

// dotOf splits "actor:counter".
func dotOf(t testing.TB, dot string) (string, uint64) {
	t.Helper()
	i := strings.LastIndexByte(dot, ':')
	n, err := strconv.ParseUint(dot[i+1:], 10, 64)
	if i < 0 || err != nil {
		t.Fatalf("bad dot %q", dot)
	}
	return dot[:i], n
}

// TestWatchOrder checks, on three real regions, what the README promises
// about the feed's order. Under concurrent writes at every region to
// shared keys (all-to-all): positions are gapless; each origin's changes
// come in that origin's order; every version in a key's final frontier had
// its event; a version that left a key's frontier never comes back in a
// later event; each key's last event shows its final versions. Across
// origins, causal order holds where every change reaches a region through
// one relaying stream (a star's spokes), and does not in all-to-all, where
// each origin's changes arrive on their own link.
func TestWatchOrder(t *testing.T) {
	t.Run("concurrent writes, all-to-all", func(t *testing.T) {
		regions := []string{"r1", "r2", "r3"}
		c := startCluster(t, regions, "all-to-all", nil)
		streams := map[string]*sseStream{}
		for _, r := range regions {
			streams[r] = watch(t, c.Node(r).HTTPURL(), "?prefix=o/")
			streams[r].next(t, 5*time.Second) // the starting position
		}
		acked := map[string][]uint64{} // actor -> counters acknowledged, in order
		errs := make(chan error, len(regions))
		for _, r := range regions {
			go func() {
				base := c.Node(r).HTTPURL()
				for i := range 60 {
					a, err := try("PUT", fmt.Sprintf("%s/v1/kv/o/k%d", base, (i*7+len(r))%10), []byte(fmt.Sprintf(`{"r":%q,"i":%d}`, r, i)))
					if err == nil && a.status != 200 {
						err = fmt.Errorf("write at %s: %d %s", r, a.status, a.body)
					}
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range regions {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 20*time.Second, "every region applied every write", func() bool { return allApplied(c) })
		for _, r := range regions {
			n := c.Node(r).Store().Seq()
			for i := uint64(1); i <= n; i++ {
				acked[c.Node(r).Store().Actor()] = append(acked[c.Node(r).Store().Actor()], i)
			}
		}
		for _, r := range regions {
			node := c.Node(r)
			head := node.Store().FeedHead()
			events := streams[r].eventsUpTo(t, head)
			shown := map[string]map[string]bool{} // key -> dots shown so far
			left := map[string]map[string]bool{}  // key -> dots that left the frontier
			lastOf := map[string]changeEvent{}
			last := map[string]uint64{}
			seen := map[string]bool{}
			for i, b := range events {
				if b.pos(t) != uint64(i+1) {
					t.Fatalf("%s: event %d at position %d: positions must be gapless from 1", r, i, b.pos(t))
				}
				ev := b.change(t)
				actor, n := dotOf(t, ev.Dot)
				if n <= last[actor] {
					t.Fatalf("%s: %s's change %d after its change %d: not in the origin's order", r, actor, n, last[actor])
				}
				last[actor] = n
				seen[ev.Dot] = true
				now := map[string]bool{}
				for _, v := range ev.Versions {
					now[v.Dot] = true
					if left[ev.Key][v.Dot] {
						t.Fatalf("%s: version %s of %s came back after leaving its frontier", r, v.Dot, ev.Key)
					}
				}
				for d := range shown[ev.Key] {
					if !now[d] {
						if left[ev.Key] == nil {
							left[ev.Key] = map[string]bool{}
						}
						left[ev.Key][d] = true
					}
				}
				shown[ev.Key] = now
				lastOf[ev.Key] = ev
			}
			// Every own write is a change here.
			if got := last[node.Store().Actor()]; got != node.Store().Seq() {
				t.Fatalf("%s: own changes up to %d in the feed, wrote %d", r, got, node.Store().Seq())
			}
			for key, ev := range lastOf {
				meta := do(t, "GET", node.HTTPURL()+"/v1/kv/"+key+"?meta=true", nil).json(t)
				if !sameJSON(t, ev.Versions, meta["versions"]) {
					t.Fatalf("%s: last event of %s shows %+v, the key holds %v", r, key, ev.Versions, meta["versions"])
				}
				for _, v := range ev.Versions {
					if !seen[v.Dot] {
						t.Fatalf("%s: version %s of %s is in the frontier but had no event", r, v.Dot, key)
					}
				}
			}
			t.Logf("%s: %d changes in the feed (%d own writes; the rest applied from the others)", r, len(events), node.Store().Seq())
		}
	})

	// chain writes A at from, waits until via has applied it, writes B at
	// via (so B causally follows A), and returns the order in which at's
	// feed shows them, with at's link from linkPaused paused meanwhile.
	chain := func(t *testing.T, c *Cluster, from, via, at, linkPaused string) []string {
		t.Helper()
		s := watch(t, c.Node(at).HTTPURL(), "?prefix=c/")
		s.next(t, 5*time.Second)
		if !c.Node(at).PauseLink(linkPaused) {
			t.Fatalf("%s has no link from %s", at, linkPaused)
		}
		a := do(t, "PUT", c.Node(from).HTTPURL()+"/v1/kv/c/a", []byte(`"A"`))
		if r := do(t, "GET", c.Node(via).HTTPURL()+"/v1/kv/c/a", nil, HeaderSession, a.header.Get(HeaderSession), HeaderWait, "10000"); r.status != 200 {
			t.Fatalf("%s did not apply A: %d %s", via, r.status, r.body)
		}
		do(t, "PUT", c.Node(via).HTTPURL()+"/v1/kv/c/b", []byte(`"B"`))
		// Give B every chance to arrive first, then let A through.
		if c.Node(at).link(via) != nil && via != linkPaused {
			eventually(t, 10*time.Second, "B at "+at, func() bool {
				_, ok, _ := c.Node(at).Store().Get("c/b")
				return ok
			})
		}
		c.Node(at).ResumeLink(linkPaused)
		var order []string
		for range 2 {
			order = append(order, s.nextEvent(t, 10*time.Second).change(t).Key)
		}
		return order
	}
	t.Run("causal order holds through a star's hub", func(t *testing.T) {
		c := startCluster(t, []string{"hub", "s1", "s2"}, "star", nil)
		// s2 hears s1 only through the hub: A from s1, then B written at
		// the hub after it applied A, both paused behind the hub's link.
		if got := chain(t, c, "s1", "hub", "s2", "hub"); got[0] != "c/a" || got[1] != "c/b" {
			t.Fatalf("s2's feed shows %v, want A before B", got)
		}
	})
	t.Run("causal order across links does not hold in all-to-all", func(t *testing.T) {
		c := startCluster(t, []string{"r1", "r2", "r3"}, "all-to-all", nil)
		// r3 gets A on its link from r1 (paused) and B on its link from r2.
		if got := chain(t, c, "r1", "r2", "r3", "r1"); got[0] != "c/b" || got[1] != "c/a" {
			t.Fatalf("r3's feed shows %v, want B before A: each link delivers its origin in order, links do not wait for each other", got)
		}
	})
}
