package link

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// rejecter wraps a recorder and rejects every delivery of the given oseqs
// of one origin (an event it cannot apply), counting them.
type rejecter struct {
	*recorder
	origin string
	oseqs  map[uint64]bool
}

func (r *rejecter) Apply(ctx context.Context, from string, msgs []Message) ([]Result, error) {
	var pass []Message
	var at []int
	out := make([]Result, len(msgs))
	for i, m := range msgs {
		if m.Origin == r.origin && r.oseqs[m.OSeq] {
			out[i] = Result{Verdict: Rejected, Reason: errors.New("event format version 2 is newer than this build reads")}
			continue
		}
		pass = append(pass, m)
		at = append(at, i)
	}
	res, err := r.recorder.Apply(ctx, from, pass)
	for j, v := range res {
		out[at[j]] = v
	}
	return out, err
}

// TestPoisonEventStallsTheLink: an event the applier rejects is delivered
// again a bounded number of times, then the link stalls in state stalled,
// naming the origin, the stream sequence and the reason; it is never acked
// (it stays in the stream), nothing after it is applied meanwhile, and
// Resume delivers it again.
func TestPoisonEventStallsTheLink(t *testing.T) {
	srv := startTestServer(t, "p", -1, t.TempDir())
	nc := connectTest(t, srv.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, 10)
	pub := newTestPublisher(t, "a", nc, ob)
	goRun(t, pub.Run)
	rec := &rejecter{recorder: newRecorder(), origin: "a~e1", oseqs: map[uint64]bool{4: true}}
	l, err := NewLink(LinkConfig{Region: "b", Peer: "a", URL: srv.ClientURL(), Origins: []string{"a"}, Applier: rec,
		GapDelay: 20 * time.Millisecond, MaxRejects: 3})
	if err != nil {
		t.Fatal(err)
	}
	goRun(t, l.Run)
	waitFor(t, 20*time.Second, "the link to stall", func() bool { return l.Status().State == StateStalled })
	st := l.Status()
	if st.Stall == nil || st.Stall.Origin != "a~e1" || st.Stall.OSeq != 4 || st.Stall.StreamSeq != 4 ||
		st.Stall.Deliveries != 3 || !strings.Contains(st.Stall.Reason, "newer than this build") {
		t.Fatalf("stall %+v, want origin a~e1 oseq 4 at stream seq 4 after 3 deliveries, with the reason", st.Stall)
	}
	if st.Rejected != 3 {
		t.Fatalf("rejected %d deliveries, want 3", st.Rejected)
	}
	holds(t, 500*time.Millisecond, "nothing after the poison event is applied while stalled", func() bool {
		return rec.appliedCount() == 3 && l.Status().State == StateStalled
	})
	// Resume: the event comes back, is rejected again at once (its
	// delivery count is past the bound) and the link stalls again.
	l.Resume()
	waitFor(t, 10*time.Second, "the resumed link to stall again", func() bool {
		s := l.Status()
		return s.State == StateStalled && s.Rejected > 3
	})
	// Once the applier accepts it (this region was upgraded), Resume lets
	// everything through in order.
	rec.recorder.mu.Lock()
	rec.oseqs = map[uint64]bool{}
	rec.recorder.mu.Unlock()
	l.Resume()
	waitFor(t, 10*time.Second, "every event applied after the fix", func() bool { return rec.appliedCount() == 10 })
	applied, _, _ := rec.snapshot()
	checkOrder(t, applied, "a~e1", 10)
	if s := l.Status(); s.State != StateUp || s.Stall != nil {
		t.Fatalf("after the fix: %+v", s)
	}
}

// TestMalformedMessageStallsTheLink: a message whose headers do not decode
// (no message ID) is not terminated (that would skip it for good): the
// link stalls on it and says why.
func TestMalformedMessageStallsTheLink(t *testing.T) {
	srv := startTestServer(t, "p", -1, t.TempDir())
	nc := connectTest(t, srv.ClientURL())
	pub := newTestPublisher(t, "a", nc, &memOutbox{})
	goRun(t, pub.Run)
	msg := &nats.Msg{Subject: Subject("a", "a"), Data: []byte("garbage"), Header: nats.Header{}}
	if _, err := nc.RequestMsg(msg, 2*time.Second); err != nil { // a JetStream publish ack
		t.Fatal(err)
	}
	rec := newRecorder()
	l, err := NewLink(LinkConfig{Region: "b", Peer: "a", URL: srv.ClientURL(), Origins: []string{"a"}, Applier: rec, MaxRejects: 2})
	if err != nil {
		t.Fatal(err)
	}
	goRun(t, l.Run)
	waitFor(t, 20*time.Second, "the link to stall", func() bool { return l.Status().State == StateStalled })
	if st := l.Status(); st.Stall.StreamSeq != 1 || !strings.Contains(st.Stall.Reason, HeaderMsgID) {
		t.Fatalf("stall %+v, want stream seq 1 and the bad header named", st.Stall)
	}
	if rec.appliedCount() != 0 {
		t.Fatal("a malformed message reached the applier")
	}
}

// TestBlockedApplyShowsAndRecovers: while the applier fails every batch
// (this region's disk is full), the link shows state blocked with the
// reason, and it is up again, with everything applied, once applies work.
func TestBlockedApplyShowsAndRecovers(t *testing.T) {
	srv := startTestServer(t, "p", -1, t.TempDir())
	nc := connectTest(t, srv.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, 5)
	goRun(t, newTestPublisher(t, "a", nc, ob).Run)
	rec := newRecorder()
	rec.fail = 1 << 30
	l := newTestLink(t, "b", "a", srv.ClientURL(), []string{"a"}, rec)
	goRun(t, l.Run)
	waitFor(t, 20*time.Second, "the link to show itself blocked", func() bool {
		s := l.Status()
		return s.State == StateBlocked && strings.Contains(s.Reason, "injected apply failure")
	})
	rec.mu.Lock()
	rec.fail = 0
	rec.mu.Unlock()
	waitFor(t, 20*time.Second, "the link to recover", func() bool { return rec.appliedCount() == 5 && l.Status().State == StateUp })
}

// TestPublisherStallIsVisible: a publish that keeps failing (an entry over
// the server's max_payload) puts the publisher in state stalled with the
// reason, and the heartbeats carry how long it has been behind, so that a
// link on the stream reports growing lag instead of 0 while the log is
// stuck.
func TestPublisherStallIsVisible(t *testing.T) {
	srv := startTestServer(t, "p", -1, t.TempDir())
	nc := connectTest(t, srv.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, 2)
	ob.mu.Lock()
	ob.entries[1].Data = make([]byte, int(nc.MaxPayload())+1) // never publishable
	ob.mu.Unlock()
	pub := newTestPublisher(t, "a", nc, ob)
	goRun(t, pub.Run)
	rec := newRecorder()
	l := newTestLink(t, "b", "a", srv.ClientURL(), []string{"a"}, rec)
	goRun(t, l.Run)
	waitFor(t, 20*time.Second, "the publisher to stall", func() bool { return pub.Stats().State == PublisherStalled })
	st := pub.Stats()
	if !strings.Contains(st.Reason, "maximum payload") || st.Since.IsZero() || st.Stalls != 1 {
		t.Fatalf("publisher stats %+v, want stalled on the maximum payload, with since", st)
	}
	waitFor(t, 10*time.Second, "the link to see the lag grow past 1.5s", func() bool {
		return rec.appliedCount() == 1 && l.Status().LagSeconds > 1.5
	})
}
