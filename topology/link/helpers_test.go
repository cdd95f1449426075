package link

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/geogate/geogate/internal/wait"
)

// The polls of this package's tests (package wait).
var (
	waitFor = wait.For
	holds   = wait.Holds
)

// memOutbox is the in-memory twin of the store's outbox: a slice under a
// mutex. With freezeTrim set, TrimOutbox succeeds but keeps the entries,
// which is what a crash between the publish ack and the trim leaves behind.
type memOutbox struct {
	mu         sync.Mutex
	entries    []OutboxEntry
	last       uint64
	trims      int
	freezeTrim bool
	readErrs   int // fail the next n reads
	trimErrs   int // fail the next n trims
}

var _ Outbox = (*memOutbox)(nil)

// add appends events of origin (actor) with consecutive oseqs starting at
// from; path is the route before this region.
func (o *memOutbox) add(origin, originRegion string, path []string, from uint64, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range n {
		o.last++
		oseq := from + uint64(i)
		o.entries = append(o.entries, OutboxEntry{
			Seq:          o.last,
			Origin:       origin,
			OriginRegion: originRegion,
			OSeq:         oseq,
			Path:         slices.Clone(path),
			Data:         fmt.Appendf(nil, `{"origin":%q,"oseq":%d}`, origin, oseq),
		})
	}
}

func (o *memOutbox) ReadOutbox(after uint64, max int) ([]OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.readErrs > 0 {
		o.readErrs--
		return nil, errors.New("injected read failure")
	}
	i := sort.Search(len(o.entries), func(i int) bool { return o.entries[i].Seq > after })
	j := min(len(o.entries), i+max)
	return slices.Clone(o.entries[i:j]), nil
}

func (o *memOutbox) TrimOutbox(upTo uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.trims++
	if o.trimErrs > 0 {
		o.trimErrs--
		return errors.New("injected trim failure")
	}
	if o.freezeTrim {
		return nil
	}
	i := sort.Search(len(o.entries), func(i int) bool { return o.entries[i].Seq > upTo })
	clear(o.entries[:i]) // drop the payloads; reslicing keeps trims O(1)
	o.entries = o.entries[i:]
	return nil
}

func (o *memOutbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.entries)
}

func (o *memOutbox) setFreeze(f bool) {
	o.mu.Lock()
	o.freezeTrim = f
	o.mu.Unlock()
}

// recorder is an Applier that checks per-origin watermarks like the store
// does: oseq <= wm is a duplicate (done), wm+1 is applied, beyond is a gap
// (!done). refuse[oseq] makes it answer !done that many times first.
type recorder struct {
	mu         sync.Mutex
	wm         map[string]uint64
	applied    []Message
	deliveries int
	perOSeq    map[string]int // origin:oseq -> deliveries
	dups       int
	gaps       int
	refuse     map[uint64]int
	refused    int
	fail       int // fail the next n calls with an error
	calls      int
}

var _ Applier = (*recorder)(nil)

func newRecorder() *recorder {
	return &recorder{wm: map[string]uint64{}, perOSeq: map[string]int{}, refuse: map[uint64]int{}}
}

func (r *recorder) Apply(_ context.Context, from string, msgs []Message) ([]Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail > 0 {
		r.fail--
		return nil, errors.New("injected apply failure")
	}
	done := make([]Result, len(msgs))
	for i, m := range msgs {
		r.deliveries++
		r.perOSeq[MsgID(m.Origin, m.OSeq)]++
		if r.refuse[m.OSeq] > 0 {
			r.refuse[m.OSeq]--
			r.refused++
			done[i] = Result{Verdict: Wait}
			continue
		}
		wm := r.wm[m.Origin]
		switch {
		case m.OSeq <= wm:
			r.dups++
			done[i] = Result{Verdict: Applied}
		case m.OSeq == wm+1:
			r.wm[m.Origin] = m.OSeq
			m.Data = slices.Clone(m.Data)
			r.applied = append(r.applied, m)
			done[i] = Result{Verdict: Applied}
		default:
			r.gaps++
			done[i] = Result{Verdict: Wait}
		}
	}
	return done, nil
}

func (r *recorder) appliedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applied)
}

func (r *recorder) snapshot() (applied []Message, deliveries, dups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applied), r.deliveries, r.dups
}

// checkOrder asserts that origin's applied events are exactly oseq 1..n in
// order with the payload the memOutbox gave them.
func checkOrder(t *testing.T, applied []Message, origin string, n int) {
	t.Helper()
	var got []Message
	for _, m := range applied {
		if m.Origin == origin {
			got = append(got, m)
		}
	}
	if len(got) != n {
		t.Fatalf("origin %s: applied %d events, want %d", origin, len(got), n)
	}
	for i, m := range got {
		want := uint64(i + 1)
		if m.OSeq != want {
			t.Fatalf("origin %s: event %d has oseq %d, want %d", origin, i, m.OSeq, want)
		}
		if wantData := fmt.Sprintf(`{"origin":%q,"oseq":%d}`, origin, want); string(m.Data) != wantData {
			t.Fatalf("origin %s oseq %d: data %s, want %s", origin, want, m.Data, wantData)
		}
	}
}

func startTestServer(tb testing.TB, name string, port int, dir string) *Server {
	tb.Helper()
	s, err := StartServer(ServerOptions{Name: name, Port: port, StoreDir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}

func connectTest(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// runner runs f in the background; stop cancels it and waits, failing the
// test if it returned an error.
type runner struct {
	cancel context.CancelFunc
	done   chan error
}

func goRun(tb testing.TB, f func(context.Context) error) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f(ctx) }()
	tb.Cleanup(func() { r.stop(tb) })
	return r
}

func (r *runner) stop(tb testing.TB) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			tb.Errorf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		tb.Errorf("run did not return within 15s of cancel")
	}
}

func newTestPublisher(tb testing.TB, region string, nc *nats.Conn, ob Outbox) *Publisher {
	tb.Helper()
	p, err := NewPublisher(PublisherConfig{Region: region, Conn: nc, Outbox: ob, Heartbeat: 100 * time.Millisecond, AckTimeout: 2 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func newTestLink(tb testing.TB, region, peer, url string, origins []string, a Applier) *Link {
	tb.Helper()
	l, err := NewLink(LinkConfig{Region: region, Peer: peer, URL: url, Origins: origins, Applier: a, GapDelay: 20 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func streamMsgs(tb testing.TB, nc *nats.Conn, region string) uint64 {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, StreamName(region))
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs
}
