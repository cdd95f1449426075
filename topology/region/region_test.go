package region

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"pgregory.net/rapid"

	"github.com/geogate/geogate/internal/ports"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/topology/link"
)

// cluster starts n embedded NATS servers forming one JetStream cluster and
// returns them (index i may be shut down by a test) and a client URL list.
func cluster(t *testing.T, n int) ([]*link.Server, string) {
	t.Helper()
	servers := make([]*link.Server, n)
	// Every node needs its peers' route addresses up front: take free
	// ports first.
	ps, release, err := ports.Hold(n)
	if err != nil {
		t.Fatal(err)
	}
	release()
	var routes []string
	for _, p := range ps {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", p))
	}
	var urls []string
	for i := range n {
		opts := link.ServerOptions{Name: fmt.Sprintf("n%d", i+1), Port: -1, StoreDir: t.TempDir()}
		if n > 1 {
			c := &link.ClusterOptions{Name: "r", Listen: routes[i]}
			for _, r := range routes {
				c.Routes = append(c.Routes, "nats-route://"+r)
			}
			opts.Cluster = c
		}
		s, err := link.StartServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		servers[i] = s
		urls = append(urls, s.ClientURL())
	}
	return servers, strings.Join(urls, ",")
}

func jsOf(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// retry calls f until it succeeds (a new cluster takes a moment to elect
// its JetStream meta leader, before which no stream can be made).
func retry[T any](t *testing.T, what string, f func() (T, error)) T {
	t.Helper()
	var v T
	var err error
	wait.For(t, 30*time.Second, what, func() bool { v, err = f(); return err == nil })
	return v
}

func TestLeaseTakeRenewExpire(t *testing.T) {
	_, url := cluster(t, 1)
	js := jsOf(t, url)
	ctx := t.Context()
	a := retry(t, "open lease", func() (*Lease, error) { return OpenLease(ctx, js, "r", "a", 1, time.Second) })
	b, err := OpenLease(ctx, js, "r", "b", 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.Read(ctx); ok {
		t.Fatal("a new lease is held")
	}
	if err := a.Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Acquire(ctx, 2); !errors.Is(err, ErrHeld) {
		t.Fatalf("second Acquire: %v, want ErrHeld", err)
	}
	if h, ok, _ := b.Read(ctx); !ok || h != (Holder{Node: "a", Term: 1}) {
		t.Fatalf("holder %+v %v", h, ok)
	}
	// Renewals keep it past its TTL: for 1.5 TTLs, a renews every 300ms
	// and b finds it held each time.
	renewed := time.Now()
	wait.Holds(t, 1500*time.Millisecond, "a's renewed lease to stay a's", func() bool {
		if time.Since(renewed) >= 300*time.Millisecond {
			if err := a.Renew(ctx); err != nil {
				t.Fatal(err)
			}
			renewed = time.Now()
		}
		return errors.Is(b.Acquire(ctx, 2), ErrHeld)
	})
	// a stops renewing: once the value expires, b takes it, and a learns
	// it lost it.
	wait.For(t, 5*time.Second, "the lease to expire and b to take it", func() bool { return b.Acquire(ctx, 2) == nil })
	if err := a.Renew(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("renew after losing: %v, want ErrLost", err)
	}
}

// TestLogFencing: an append naming a last sequence the log moved past is
// refused, and of concurrent appends after the same sequence exactly one
// succeeds (on a replicated stream, as the region runs it).
func TestLogFencing(t *testing.T) {
	_, url := cluster(t, 3)
	js := jsOf(t, url)
	ctx := t.Context()
	l := retry(t, "open log", func() (*Log, error) { return OpenLog(ctx, js, "r", 3, 0, 0) })
	s1, err := l.Append(ctx, 0, 1, []byte("a"))
	if err != nil || s1 != 1 {
		t.Fatalf("first append: %d %v", s1, err)
	}
	if _, err := l.Append(ctx, 0, 1, []byte("stale")); !errors.Is(err, ErrFenced) {
		t.Fatalf("append after a stale sequence: %v, want ErrFenced", err)
	}
	for round := range 20 {
		last, _, err := l.Last(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var won, fenced atomic.Int32
		for w := range 4 {
			wg.Go(func() {
				_, err := l.Append(ctx, last, uint64(round), []byte{byte(w)})
				switch {
				case err == nil:
					won.Add(1)
				case errors.Is(err, ErrFenced):
					fenced.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 || fenced.Load() != 3 {
			t.Fatalf("round %d: %d appends after %d succeeded, %d fenced; want exactly one", round, won.Load(), last, fenced.Load())
		}
	}
	if seq, term, _ := l.Last(ctx); seq != 21 || term != 19 {
		t.Fatalf("last %d term %d", seq, term)
	}
	// Follow delivers every entry in order from any point.
	var got []Entry
	fctx, cancel := context.WithCancel(ctx)
	err = l.Follow(fctx, 10, func(es []Entry, _, _ uint64) error {
		got = append(got, es...)
		if len(got) >= 11 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || len(got) != 11 || got[0].Seq != 11 || got[10].Seq != 21 {
		t.Fatalf("follow: %v, %d entries from %v", err, len(got), got)
	}
}

// electorNode is one node of TestElectorFailover.
type electorNode struct {
	name   string
	log    *Log
	cancel context.CancelFunc
	done   chan struct{}
	e      *Elector
	// applied is the last log sequence the node applied (its promote
	// catches up to the end first).
	applied atomic.Uint64
	leads   atomic.Int32
}

// TestElectorFailover: three nodes elect one leader; when the leader stops
// (its elector and its NATS server), another leads within seconds with a
// higher term, after appending its term marker, and the old leader's
// appends are fenced.
func TestElectorFailover(t *testing.T) {
	servers, _ := cluster(t, 3)
	ctx := t.Context()
	var nodes []*electorNode
	for i, s := range servers {
		js := jsOf(t, s.ClientURL())
		n := &electorNode{name: fmt.Sprintf("n%d", i+1), done: make(chan struct{})}
		n.log = retry(t, "open log", func() (*Log, error) { return OpenLog(ctx, js, "r", 3, 0, 0) })
		lease := retry(t, "open lease", func() (*Lease, error) { return OpenLease(ctx, js, "r", n.name, 3, 2*time.Second) })
		n.e = NewElector(ElectorConfig{Node: n.name, Lease: lease, Log: n.log, Hooks: Hooks{
			Promote: func(ctx context.Context, term uint64) error {
				last, _, err := n.log.Last(ctx)
				if err != nil {
					return err
				}
				seq, err := n.log.Append(ctx, last, term, nil)
				if err == nil {
					n.applied.Store(seq)
				}
				return err
			},
			Lead: func(ctx context.Context, term uint64) { n.leads.Add(1); <-ctx.Done() },
		}})
		nctx, cancel := context.WithCancel(ctx)
		n.cancel = cancel
		go func() { defer close(n.done); n.e.Run(nctx) }()
		nodes = append(nodes, n)
	}
	leaderOf := func() (*electorNode, int) {
		var l *electorNode
		count := 0
		for _, n := range nodes {
			if r, _ := n.e.Role(); r == Leader {
				l, count = n, count+1
			}
		}
		return l, count
	}
	var first *electorNode
	wait.For(t, 30*time.Second, "a leader", func() bool {
		l, count := leaderOf()
		if count > 1 {
			t.Fatalf("%d leaders at once", count)
		}
		first = l
		return l != nil
	})
	_, h1 := first.e.Role()
	i := map[string]int{"n1": 0, "n2": 1, "n3": 2}[first.name]
	start := time.Now()
	first.cancel()
	<-first.done
	servers[i].Shutdown()
	nodes = append(nodes[:i:i], nodes[i+1:]...)
	var second *electorNode
	wait.For(t, 20*time.Second, "a new leader", func() bool {
		l, count := leaderOf()
		if count > 1 {
			t.Fatalf("%d leaders at once", count)
		}
		second = l
		return l != nil
	})
	_, h2 := second.e.Role()
	t.Logf("%s led term %d; %s leads term %d after %s", h1.Node, h1.Term, h2.Node, h2.Term, time.Since(start).Round(time.Millisecond))
	if h2.Term <= h1.Term {
		t.Fatalf("term went from %d to %d", h1.Term, h2.Term)
	}
	// The old leader's view of the log is stale: an append from it is fenced.
	if _, err := second.log.Append(ctx, first.applied.Load(), h1.Term, []byte("late")); !errors.Is(err, ErrFenced) {
		t.Fatalf("the deposed leader's append: %v, want ErrFenced", err)
	}
}

// TestAsmProperty: whatever mix of whole entries, entries in parts and
// groups of parts cut short (a leader deposed halfway) the log holds, the
// reassembly yields exactly the whole entries, in order, with their data.
func TestAsmProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		type msg struct {
			part string
			data []byte
		}
		var log []msg
		var want [][]byte
		for range rapid.IntRange(0, 30).Draw(t, "entries") {
			data := rapid.SliceOfN(rapid.Byte(), 0, 40).Draw(t, "data")
			n := rapid.IntRange(1, 4).Draw(t, "parts")
			cut := n > 1 && rapid.Bool().Draw(t, "cut")
			keep := n
			if cut {
				keep = rapid.IntRange(1, n-1).Draw(t, "kept")
			}
			size := (len(data) + n - 1) / n
			for i := range keep {
				lo, hi := min(len(data), i*size), min(len(data), (i+1)*size)
				if i == n-1 {
					hi = len(data)
				}
				m := msg{data: data[lo:hi]}
				if n > 1 {
					m.part = fmt.Sprintf("%d/%d", i+1, n)
				}
				log = append(log, m)
			}
			if !cut {
				want = append(want, data)
			}
		}
		var a asm
		var got [][]byte
		var seqs []uint64
		for i, m := range log {
			if e, ok := a.add(uint64(i+1), 1, m.part, m.data); ok {
				got = append(got, append([]byte(nil), e.Data...))
				seqs = append(seqs, e.Seq)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d entries, want %d", len(got), len(want))
		}
		for i := range want {
			if string(got[i]) != string(want[i]) {
				t.Fatalf("entry %d: %q, want %q", i, got[i], want[i])
			}
			if i > 0 && seqs[i] <= seqs[i-1] {
				t.Fatalf("sequences out of order: %v", seqs)
			}
		}
	})
}

// TestLogParts: an entry larger than a message is appended in parts and
// followed whole; parts left by a deposed leader are skipped.
func TestLogParts(t *testing.T) {
	_, url := cluster(t, 1)
	js := jsOf(t, url)
	ctx := t.Context()
	l := retry(t, "open log", func() (*Log, error) { return OpenLog(ctx, js, "r", 1, 0, 0) })
	l.SetMaxMessage(1 << 10)
	big := []byte(strings.Repeat("0123456789abcdef", 200)) // 3200 bytes: 4 parts
	last, err := l.Append(ctx, 0, 1, big)
	if err != nil || last != 4 {
		t.Fatalf("append in parts: last %d, %v", last, err)
	}
	// A deposed leader got one part of three in, then the next leader
	// appended its marker after it.
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: LogSubject("r"), Data: []byte("orphan"),
		Header: nats.Header{HeaderTerm: {"1"}, HeaderPart: {"1/3"}}}, jetstream.WithExpectLastSequence(4)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, 5, 2, []byte("marker")); err != nil {
		t.Fatal(err)
	}
	// Appending after a stale sequence midway is fenced.
	if _, err := l.Append(ctx, 4, 2, big); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale append in parts: %v", err)
	}
	var got []Entry
	fctx, cancel := context.WithCancel(ctx)
	err = l.Follow(fctx, 0, func(es []Entry, through, _ uint64) error {
		if through != 6 && len(got)+len(es) >= 2 {
			t.Errorf("through %d after the marker, want 6", through)
		}
		for _, e := range es {
			got = append(got, Entry{Seq: e.Seq, Term: e.Term, Data: append([]byte(nil), e.Data...)})
		}
		if len(got) >= 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || len(got) != 2 {
		t.Fatalf("follow: %v, %d entries", err, len(got))
	}
	if string(got[0].Data) != string(big) || got[0].Seq != 4 || string(got[1].Data) != "marker" || got[1].Seq != 6 || got[1].Term != 2 {
		t.Fatalf("entries: seq %d (%d bytes), seq %d %q term %d", got[0].Seq, len(got[0].Data), got[1].Seq, got[1].Data, got[1].Term)
	}
}

// TestFollowSurvivesStreamLeaderMoves: the region log's JetStream leader
// moves (as the region's leader moves it off its own server) while a node
// follows the log; the follower, restarted from what it applied whenever
// Follow returns (as a node's follow loop does), receives every entry
// appended after each move.
func TestFollowSurvivesStreamLeaderMoves(t *testing.T) {
	_, url := cluster(t, 3)
	js := jsOf(t, url)
	ctx := t.Context()
	// Entries expire after two seconds, so the follower's consumer often
	// points past the log's first entry when the leader moves. (An entry
	// that expires before the follower has it can never be applied: the
	// follower must be following before the first append, and have time
	// to take each entry on a loaded machine.)
	l := retry(t, "open log", func() (*Log, error) { return OpenLog(ctx, js, "r", 3, 2*time.Second, 0) })
	var applied atomic.Uint64
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for fctx.Err() == nil {
			_ = l.Follow(fctx, applied.Load(), func(es []Entry, _, _ uint64) error {
				for _, e := range es {
					if e.Seq != applied.Load()+1 {
						return fmt.Errorf("entry %d after %d", e.Seq, applied.Load())
					}
					applied.Store(e.Seq)
				}
				return nil
			})
			_ = wait.Sleep(fctx, 50*time.Millisecond)
		}
	}()
	defer func() { cancel(); <-done }()
	wait.For(t, 20*time.Second, "the follower's consumer on the log", func() bool {
		s, err := js.Stream(ctx, LogStream("r"))
		return err == nil && s.CachedInfo().State.Consumers > 0
	})
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var last uint64
	for round := range 6 {
		seq := retry(t, "append", func() (uint64, error) { return l.Append(ctx, last, 1, []byte{byte(round)}) })
		last = seq
		wait.For(t, 20*time.Second, fmt.Sprintf("the follower to apply entry %d", seq), func() bool { return applied.Load() >= seq })
		wait.For(t, 10*time.Second, fmt.Sprintf("entry %d to expire", seq), func() bool {
			first, err := l.First(ctx)
			return err == nil && first > seq
		})
		// Move the stream's leader, as a region's new leader does.
		if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+LogStream("r"), nil, 5*time.Second); err != nil {
			t.Fatalf("step down: %v", err)
		}
	}
	seq := retry(t, "append after the last move", func() (uint64, error) { return l.Append(ctx, last, 1, []byte("end")) })
	wait.For(t, 20*time.Second, fmt.Sprintf("the follower to apply entry %d after the last move", seq), func() bool { return applied.Load() >= seq })
}

// TestFirstLeaderAllowed: an empty node never starts the region log while
// a node announced data; it does once every node announced itself empty,
// or, having waited (patient), when some never announced.
func TestFirstLeaderAllowed(t *testing.T) {
	nodes := []string{"a-1", "a-2", "a-3"}
	for _, c := range []struct {
		announced map[string]bool
		patient   bool
		want      bool
	}{
		{map[string]bool{"a-1": true, "a-2": false, "a-3": false}, true, false},
		{map[string]bool{"a-2": false, "a-3": false}, false, false},
		{map[string]bool{"a-2": false, "a-3": false}, true, true},
		{map[string]bool{"a-1": false, "a-2": false, "a-3": false}, false, true},
		{map[string]bool{"a-1": false, "a-2": false, "a-3": false, "a-4": true}, true, false},
	} {
		if got := FirstLeaderAllowed(c.announced, nodes, c.patient); got != c.want {
			t.Errorf("FirstLeaderAllowed(%v, patient %v) = %v, want %v", c.announced, c.patient, got, c.want)
		}
	}
}

// TestRosterKeepsData: a node that announced data keeps that record when
// it announces itself empty later.
func TestRosterKeepsData(t *testing.T) {
	_, url := cluster(t, 1)
	js := jsOf(t, url)
	ctx := t.Context()
	r := retry(t, "open roster", func() (*Roster, error) { return OpenRoster(ctx, js, "r", 1) })
	for _, a := range []struct {
		node string
		data bool
	}{{"n1", true}, {"n2", false}, {"n1", false}} {
		if err := r.Announce(ctx, a.node, a.data); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.Read(ctx)
	if err != nil || len(got) != 2 || !got["n1"] || got["n2"] {
		t.Fatalf("roster %v %v, want n1 with data, n2 empty", got, err)
	}
}

// TestSlowPromotionKeepsTheLease: a node whose catching up (Promote) takes
// longer than the lease lives keeps the lease: it is renewed while the
// node catches up, so the node leads at the term it took, and nobody else
// could take the lease meanwhile.
func TestSlowPromotionKeepsTheLease(t *testing.T) {
	ctx := t.Context()
	const ttl = time.Second
	_, l, lease, rival := electionRig(t, "slow", "rival", ttl)
	var led atomic.Uint64
	var stolen atomic.Bool
	e := NewElector(ElectorConfig{Node: "slow", Lease: lease, Log: l, Hooks: Hooks{
		Promote: func(ctx context.Context, term uint64) error {
			// Catching up for three lease lifetimes; a rival tries to
			// take the lease all along.
			deadline := time.Now().Add(3 * ttl)
			for time.Now().Before(deadline) {
				if rival.Acquire(ctx, term+1) == nil {
					stolen.Store(true)
				}
				if err := wait.Sleep(ctx, 100*time.Millisecond); err != nil {
					return err
				}
			}
			_, err := l.Append(ctx, 0, term, nil)
			return err
		},
		Lead: func(ctx context.Context, term uint64) { led.Store(term); <-ctx.Done() },
	}})
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ectx) }()
	defer func() { cancel(); <-done }()
	wait.For(t, 20*time.Second, "the slow node to lead", func() bool { return led.Load() != 0 })
	if stolen.Load() {
		t.Fatal("a rival took the lease while the slow node caught up")
	}
	if h, ok, err := lease.Read(ctx); err != nil || !ok || h.Node != "slow" || h.Term != led.Load() {
		t.Fatalf("lease %+v %v %v, want slow at term %d", h, ok, err, led.Load())
	}
}

// TestFollowReportsPending: each delivery says how many entries the log
// holds past it, so through+pending is the log's end while nothing is
// appended, and the call that reaches the end reports none pending.
func TestFollowReportsPending(t *testing.T) {
	_, url := cluster(t, 1)
	js := jsOf(t, url)
	ctx := t.Context()
	l := retry(t, "open log", func() (*Log, error) { return OpenLog(ctx, js, "p", 1, 0, 0) })
	const n = 150 // more than one delivery batch
	var last uint64
	for i := range n {
		var err error
		if last, err = l.Append(ctx, last, 1, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	calls, got := 0, 0
	fctx, cancel := context.WithCancel(ctx)
	err := l.Follow(fctx, 0, func(es []Entry, through, pending uint64) error {
		calls++
		got += len(es)
		if through+pending != n {
			t.Errorf("call %d: through %d + pending %d, want the log's end %d", calls, through, pending, n)
		}
		if got == n {
			if pending != 0 {
				t.Errorf("at the end: pending %d", pending)
			}
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || got != n || calls < 2 {
		t.Fatalf("follow: %v, %d entries in %d calls", err, got, calls)
	}
}

// TestPromotionAbandonedWhenLeaseLost: Promote finishes (its term marker
// is in the log, the node's store leads) while the renewal beside it finds
// the lease taken by another node. The Elector must not lead that term,
// and must let the node undo its promotion: Abandon runs for the term,
// Lead never does.
func TestPromotionAbandonedWhenLeaseLost(t *testing.T) {
	ctx := t.Context()
	js, l, lease, rival := electionRig(t, "a", "b", time.Second)
	kv, err := js.KeyValue(ctx, LeaseBucket("r"))
	if err != nil {
		t.Fatal(err)
	}
	var promoted, led, abandoned atomic.Uint64
	e := NewElector(ElectorConfig{Node: "a", Lease: lease, Log: l, Hooks: Hooks{
		Promote: func(pctx context.Context, term uint64) error {
			if promoted.Load() != 0 {
				return context.Canceled // only the first attempt matters
			}
			// The lease changes hands while this node promotes itself
			// (forced here; in life, renewals that could not reach the
			// bucket for a lease's lifetime).
			if err := kv.Delete(ctx, "leader"); err != nil {
				return err
			}
			if err := rival.Acquire(ctx, term+1); err != nil {
				return err
			}
			// The marker append, under way, lands after the renewal
			// found the lease lost.
			<-pctx.Done()
			if _, err := l.Append(context.Background(), 0, term, nil); err != nil {
				return err
			}
			promoted.Store(term)
			return nil
		},
		Lead:    func(lctx context.Context, term uint64) { led.Store(term); <-lctx.Done() },
		Abandon: func(term uint64) { abandoned.Store(term) },
	}})
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ectx) }()
	wait.For(t, 20*time.Second, "a promotion, then its abandonment", func() bool {
		return promoted.Load() != 0 && abandoned.Load() == promoted.Load()
	})
	cancel()
	<-done
	if led.Load() == promoted.Load() {
		t.Fatalf("the Elector led term %d, whose lease was lost while it promoted", led.Load())
	}
}

// electionRig opens, on a cluster of one server, region r's log and the
// leases of node and rival with the given TTL.
func electionRig(t *testing.T, node, rival string, ttl time.Duration) (jetstream.JetStream, *Log, *Lease, *Lease) {
	t.Helper()
	_, url := cluster(t, 1)
	js := jsOf(t, url)
	ctx := t.Context()
	l := retry(t, "open log", func() (*Log, error) { return OpenLog(ctx, js, "r", 1, 0, 0) })
	a := retry(t, "open lease", func() (*Lease, error) { return OpenLease(ctx, js, "r", node, 1, ttl) })
	b := retry(t, "open lease", func() (*Lease, error) { return OpenLease(ctx, js, "r", rival, 1, ttl) })
	return js, l, a, b
}
