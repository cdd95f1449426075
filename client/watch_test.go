package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
)

// watchInto runs c.Watch in a goroutine and sends what it yields to the
// returned channels; the watch ends when the test does.
func watchInto(t *testing.T, ctx context.Context, c *client.Client, prefix string, opts ...client.WatchOption) (<-chan client.Change, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	changes, errs := make(chan client.Change, 1024), make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ch, err := range c.Watch(ctx, prefix, opts...) {
			if err != nil {
				errs <- err
				return
			}
			changes <- ch
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return changes, errs
}

func nextChange(t *testing.T, changes <-chan client.Change, errs <-chan error) client.Change {
	t.Helper()
	select {
	case ch := <-changes:
		return ch
	case err := <-errs:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("no change within 15s")
	}
	return client.Change{}
}

func mustPut(t *testing.T, url, key, value string) {
	t.Helper()
	if _, err := stateless(t, url).Put(context.Background(), key, json.RawMessage(value)); err != nil {
		t.Fatalf("put %s at %s: %v", key, url, err)
	}
}

// TestWatchFollowsChanges: Watch yields every change under the prefix,
// local and replicated, with its position, feed, origin, dot and versions.
func TestWatchFollowsChanges(t *testing.T) {
	c := startRegions(t, []string{"r1", "r2"}, "all-to-all", nil)
	cl := newClient(t, []string{urlOf(c, "r1")})
	changes, errs := watchInto(t, context.Background(), cl, "w/")
	eventually(t, 5*time.Second, "the stream open", func() bool { return strings.Contains(metrics(t, urlOf(c, "r1")), "geogate_watchers 1") })
	mustPut(t, urlOf(c, "r1"), "w/1", `{"a":1}`)
	mustPut(t, urlOf(c, "r1"), "x/1", `1`)
	mustPut(t, urlOf(c, "r2"), "w/2", `2`)
	a, b := nextChange(t, changes, errs), nextChange(t, changes, errs)
	feed := c.Node("r1").Store().Actor()
	if a.Key != "w/1" || a.Origin != "r1" || a.Position != 1 || a.Feed != feed || a.Dot != feed+":1" ||
		len(a.Versions) != 1 || string(a.Versions[0].Value) != `{"a":1}` || a.Versions[0].Origin != "r1" {
		t.Fatalf("first change %+v", a)
	}
	if b.Key != "w/2" || b.Origin != "r2" || b.Position != 3 || !strings.HasPrefix(b.Dot, "r2~") || string(b.Versions[0].Value) != "2" {
		t.Fatalf("second change %+v, want w/2 from r2 at position 3 (x/1 took 2)", b)
	}
}

func metrics(t *testing.T, url string) string {
	t.Helper()
	var b strings.Builder
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// TestWatchResumes: when the region goes away, Watch reconnects with
// backoff and resumes after the last position it yielded: across a
// restart, every change arrives once, in order, none skipped.
func TestWatchResumes(t *testing.T) {
	c := startRegions(t, []string{"r1", "r2"}, "all-to-all", nil)
	r1 := urlOf(c, "r1")
	rec := newRecorder()
	cl := newClient(t, []string{r1}, client.WithHTTPClient(&http.Client{Transport: rec}),
		client.WithRetry(client.Retry{BaseDelay: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond}))
	changes, errs := watchInto(t, context.Background(), cl, "")
	eventually(t, 5*time.Second, "the stream open", func() bool { return strings.Contains(metrics(t, r1), "geogate_watchers 1") })
	mustPut(t, r1, "k1", `1`)
	if ch := nextChange(t, changes, errs); ch.Key != "k1" || ch.Position != 1 {
		t.Fatalf("first change %+v", ch)
	}
	if err := c.Stop("r1"); err != nil {
		t.Fatal(err)
	}
	mustPut(t, urlOf(c, "r2"), "k2", `2`) // r1 applies it when it is back
	eventually(t, 10*time.Second, "failed reconnects", func() bool {
		return rec.count(r1+"/v1/watch", func(e exchange) bool { return e.err != nil }) >= 2
	})
	if err := c.StartRegion(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "r1 applied k2", func() bool {
		_, ok, _ := c.Node("r1").Store().Get("k2")
		return ok
	})
	mustPut(t, r1, "k3", `3`)
	got := []client.Change{nextChange(t, changes, errs), nextChange(t, changes, errs)}
	if got[0].Key != "k2" || got[0].Position != 2 || got[1].Key != "k3" || got[1].Position != 3 {
		t.Fatalf("after the restart: %+v, want k2 at 2 and k3 at 3", got)
	}
	select {
	case ch := <-changes:
		t.Fatalf("a change twice or out of place: %+v", ch)
	default:
	}
}

// TestWatchSlowConsumerResumes: a caller that stops taking changes while
// the region writes on is cut off by the region (slow_consumer); Watch
// reconnects after the last change it yielded, so the caller still gets
// every change once, in order.
func TestWatchSlowConsumerResumes(t *testing.T) {
	c := startRegions(t, []string{"r1"}, "all-to-all", nil, func(s *gateway.ClusterSpec) {
		s.Tune = func(c *config.Config) { c.Watch.MaxLag = 20 }
	})
	r1 := urlOf(c, "r1")
	cl := newClient(t, []string{r1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	const n = 250
	got := make(chan []uint64, 1)
	ready := make(chan struct{})
	go func() {
		var pos []uint64
		for ch, err := range cl.Watch(ctx, "") {
			if err != nil {
				break
			}
			pos = append(pos, ch.Position)
			if len(pos) == 1 {
				close(ready)
				<-release // a caller busy elsewhere
			}
			if len(pos) == n {
				break
			}
		}
		got <- pos
	}()
	eventually(t, 5*time.Second, "the stream open", func() bool { return strings.Contains(metrics(t, r1), "geogate_watchers 1") })
	big := `"` + strings.Repeat("x", 64<<10) + `"`
	mustPut(t, r1, "big/0", big)
	<-ready
	for i := 1; i < n; i++ { // 16 MiB: more than the connection buffers
		mustPut(t, r1, fmt.Sprintf("big/%d", i), big)
	}
	close(release)
	var pos []uint64
	select {
	case pos = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the watch did not deliver every change")
	}
	for i, p := range pos {
		if p != uint64(i+1) {
			t.Fatalf("change %d at position %d: want every position once, in order", i, p)
		}
	}
	if len(pos) != n {
		t.Fatalf("%d changes, want %d", len(pos), n)
	}
	if !strings.Contains(metrics(t, r1), `geogate_watch_disconnects_total{reason="slow_consumer"} 1`) {
		t.Fatal("the region did not cut the slow stream: the test did not exercise a reconnect")
	}
}

// TestWatchEnds: what reconnecting cannot fix ends the iteration with an
// error: a position the region no longer keeps, another region's feed, a
// bad prefix, the context's end (also while backing off).
func TestWatchEnds(t *testing.T) {
	c := startRegions(t, []string{"r1", "r2"}, "all-to-all", nil, func(s *gateway.ClusterSpec) {
		s.Tune = func(c *config.Config) { c.Watch.Retention = 3 }
	})
	r1, r2 := urlOf(c, "r1"), urlOf(c, "r2")
	for i := range 6 {
		mustPut(t, r1, fmt.Sprintf("k%d", i), `1`)
	}
	feed1, feed2 := c.Node("r1").Store().Actor(), c.Node("r2").Store().Actor()
	first := func(cl *client.Client, prefix string, opts ...client.WatchOption) (client.Change, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		for ch, err := range cl.Watch(ctx, prefix, opts...) {
			return ch, err
		}
		return client.Change{}, errors.New("the iteration ended without a value")
	}
	cl := newClient(t, []string{r1})
	var gone *client.PositionGoneError
	if _, err := first(cl, "", client.ResumeAfter(feed1, 1)); !errors.As(err, &gone) || gone.After != 1 || gone.Oldest <= 2 {
		t.Fatalf("resume after a pruned position: %v, want *PositionGoneError", err)
	}
	if _, err := first(cl, "", client.ResumeAfter(feed2, 1)); !errors.Is(err, client.ErrFeedChanged) {
		t.Fatalf("resume with r2's feed at r1: %v, want ErrFeedChanged", err)
	}
	var bp *client.BadPrefixError
	if _, err := first(cl, "a\x00b"); !errors.As(err, &bp) {
		t.Fatalf("bad prefix: %v, want *BadPrefixError", err)
	}
	// With both regions as endpoints, a resume finds the one serving its
	// feed.
	eventually(t, 10*time.Second, "r2 applied r1's writes", func() bool { return c.Node("r2").Store().Applied()[feed1] == 6 })
	changes, errs := watchInto(t, context.Background(), newClient(t, []string{r1, r2}), "", client.ResumeAfter(feed2, c.Node("r2").Store().FeedHead()))
	mustPut(t, r2, "late", `1`)
	if ch := nextChange(t, changes, errs); ch.Feed != feed2 || ch.Key != "late" {
		t.Fatalf("resume of r2's feed with [r1, r2]: %+v", ch)
	}

	// The context ends the watch, even while it backs off from a region
	// that is down.
	down := newClient(t, []string{brokenPort(t)})
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() {
		for _, err := range down.Watch(ctx, "") {
			ended <- err
			return
		}
	}()
	cancel()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled watch: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end with its context")
	}
}
