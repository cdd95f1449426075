package link

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/geogate/geogate/internal/wait"
)

// gapRig is a stream GEO_a on a real server and a way to publish origin
// a~x's events into it in any order.
type gapRig struct {
	url string
	pub func(oseq uint64)
}

func newGapRig(t *testing.T) gapRig {
	t.Helper()
	s := startTestServer(t, "a", -1, t.TempDir())
	nc := connectTest(t, s.ClientURL())
	_ = newTestPublisher(t, "a", nc, &memOutbox{}) // creates GEO_a
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return gapRig{url: s.ClientURL(), pub: func(oseq uint64) {
		e := OutboxEntry{Seq: oseq, Origin: "a~x", OriginRegion: "a", OSeq: oseq, Data: []byte(fmt.Sprintf(`{"origin":"a~x","oseq":%d}`, oseq))}
		if _, err := js.PublishMsg(t.Context(), encodeMsg("a", e, ackedPrefix{})); err != nil {
			t.Fatal(err)
		}
	}}
}

// startGapLink runs a link b <- a over rig with cfg's GapDelay and AckWait
// and the given parking limit (0: the default).
func startGapLink(t *testing.T, rig gapRig, rec *recorder, cfg LinkConfig, limit int) *Link {
	t.Helper()
	cfg.Region, cfg.Peer, cfg.URL, cfg.Origins, cfg.Applier = "b", "a", rig.url, []string{"a"}, rec
	l, err := NewLink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if limit > 0 {
		l.parkLimit = limit
	}
	goRun(t, l.Run)
	return l
}

// startGapped publishes origin a~x's events 2..n (1 is missing), starts a
// link over them and waits until it has seen each of them wait.
func startGapped(t *testing.T, n uint64, cfg LinkConfig, limit int) (gapRig, *recorder, *Link) {
	t.Helper()
	rig := newGapRig(t)
	for o := uint64(2); o <= n; o++ {
		rig.pub(o)
	}
	rec := newRecorder()
	l := startGapLink(t, rig, rec, cfg, limit)
	wait.For(t, 10*time.Second, "every event after the gap seen waiting", func() bool { return rec.gapCount() >= int(n-1) })
	return rig, rec, l
}

func (r *recorder) gapCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gaps
}

func (r *recorder) deliveriesOf(origin string, oseq uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.perOSeq[MsgID(origin, oseq)]
}

func (r *recorder) raise(origin string, wm uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wm[origin] = max(r.wm[origin], wm)
}

// Events waiting behind a gap follow the event that fills it at once, not
// after a redelivery delay: with GapDelay at an hour, a link that nak'd them
// would not see them again during the test.
func TestParkedEventsFollowTheGapFiller(t *testing.T) {
	const n = 30
	rig, rec, l := startGapped(t, n, LinkConfig{GapDelay: time.Hour, Batch: 8}, 0)
	rig.pub(1)
	wait.For(t, 10*time.Second, "every event applied", func() bool { return rec.appliedCount() == n })
	applied, _, _ := rec.snapshot()
	checkOrder(t, applied, "a~x", n)
	if st := l.Status(); st.Waiting < n-1 {
		t.Fatalf("Status().Waiting = %d, want at least %d", st.Waiting, n-1)
	}
}

// Past the parking limit the link naks what waits, as it did before
// parking: every event still arrives, in order.
func TestParkingLimitNaksTheRest(t *testing.T) {
	const n = 25
	rig, rec, _ := startGapped(t, n, LinkConfig{GapDelay: 20 * time.Millisecond, Batch: 4}, 3)
	// The newest event is past the limit: nak'd, it is delivered again
	// (a parked one would be offered again only after oseq 2, the first).
	wait.For(t, 10*time.Second, "an event past the limit delivered again", func() bool { return rec.deliveriesOf("a~x", n) > 1 })
	rig.pub(1)
	wait.For(t, 20*time.Second, "every event applied", func() bool { return rec.appliedCount() == n })
	applied, _, _ := rec.snapshot()
	checkOrder(t, applied, "a~x", n)
}

// A gap filled by another path (a re-seed raising the watermark) lets the
// parked events through within about GapDelay: the link offers each
// origin's first parked event again every GapDelay.
func TestParkedEventsOfferedAgainEveryGapDelay(t *testing.T) {
	const n = 12
	_, rec, _ := startGapped(t, n, LinkConfig{GapDelay: 20 * time.Millisecond, AckWait: time.Minute, Batch: 4}, 0)
	rec.raise("a~x", 1)
	wait.For(t, 10*time.Second, "events after the gap applied", func() bool { return rec.appliedCount() == n-1 })
	applied, _, _ := rec.snapshot()
	for i, m := range applied {
		if m.OSeq != uint64(i+2) {
			t.Fatalf("applied[%d] is oseq %d, want %d", i, m.OSeq, i+2)
		}
	}
}

// The link keeps parked messages' ack deadlines from running out: the
// server does not deliver them again while the link holds them.
func TestParkedMessagesNotRedelivered(t *testing.T) {
	rig, rec, _ := startGapped(t, 4, LinkConfig{GapDelay: time.Hour, AckWait: time.Second, Batch: 8}, 0)
	wait.Holds(t, 3*time.Second, "oseq 2 delivered once (its ack deadline extended)", func() bool {
		return rec.deliveriesOf("a~x", 2) == 1
	})
	rig.pub(1)
	wait.For(t, 10*time.Second, "every event applied", func() bool { return rec.appliedCount() == 4 })
}

// Pausing lets parked messages go (nak'd, back in the consumer at once), so
// after Resume they come again with the event that fills their gap, long
// before their ack deadline.
func TestPauseReleasesParkedMessages(t *testing.T) {
	const n = 10
	rig, rec, l := startGapped(t, n, LinkConfig{GapDelay: time.Hour, AckWait: time.Minute, Batch: 4}, 0)
	if err := l.Pause(t.Context()); err != nil {
		t.Fatal(err)
	}
	rig.pub(1)
	l.Resume()
	wait.For(t, 10*time.Second, "every event applied", func() bool { return rec.appliedCount() == n })
	applied, _, _ := rec.snapshot()
	checkOrder(t, applied, "a~x", n)
}
