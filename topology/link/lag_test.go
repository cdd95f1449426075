package link

import (
	"testing"
	"time"
)

func TestLagTracker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	type step struct {
		op   string // hb, done, wait, idle, contact
		at   float64
		seq  uint64
		want float64 // lag at `at` after the step (-1: do not check)
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"no heartbeat: since last contact", []step{
			{"contact", 2, 0, 0}, {"contact", 1, 0, -1}, {"check", 5, 0, 3},
		}},
		{"behind: the age of the oldest heartbeat not caught up to", []step{
			{"hb", 1, 10, 0}, {"done", 2, 9, 1}, {"check", 3.5, 0, 2.5},
		}},
		{"caught up by acked seq, heartbeats on time: 0", []step{
			{"hb", 1, 10, 0}, {"done", 2, 10, 0}, {"hb", 3, 20, 0}, {"done", 4, 25, 0},
			{"check", 7, 0, 4}, // overdue (> 1.5 x the 2s spacing): since the last heartbeat caught up to
		}},
		{"a waiting message blocks catching up", []step{
			{"hb", 1, 10, 0}, {"wait", 2, 5, 1}, {"done", 2, 10, 1}, {"done", 3, 5, 2},
		}},
		{"a message newer than the heartbeat waiting does not", []step{
			// Steady load after a gap: some newer message keeps waiting a
			// moment behind its predecessor; what the heartbeat vouched
			// for is all done.
			{"hb", 1, 10, 0}, {"wait", 2, 12, 1}, {"done", 2, 10, 0}, {"hb", 3, 20, 0}, {"wait", 3.5, 22, -1}, {"done", 3.5, 12, 0.5},
			{"done", 4, 20, 0},
		}},
		{"idle info after the heartbeat catches up", []step{
			{"hb", 1, 10, 0}, {"idle", 0.5, 0, 0}, {"check", 1.4, 0, 0.4}, {"idle", 1.5, 0, 0}, {"check", 4, 0, 3},
		}},
		{"idle clears waiting", []step{
			{"wait", 0, 3, -1}, {"done", 0, 10, -1}, {"hb", 1, 10, 0}, {"check", 1.5, 0, 0.5}, {"idle", 2, 0, 0},
		}},
		{"silence grows lag", []step{
			{"hb", 1, 0, 0}, {"check", 11, 0, 10}, {"hb", 12, 0, 0},
		}},
		{"steady heartbeats while caught up read 0", []step{
			{"hb", 1, 5, 0}, {"done", 1, 5, 0}, {"check", 1.9, 0, 0}, {"hb", 2, 5, 0}, {"check", 2.9, 0, 0}, {"hb", 3, 5, 0}, {"check", 4.5, 0, 0},
			{"check", 4.6, 0, 1.6},
		}},
		{"newest qualifying heartbeat wins", []step{
			{"hb", 1, 10, 0}, {"hb", 2, 20, 1}, {"hb", 3, 30, 2}, {"done", 4, 20, 1}, {"done", 5, 30, 2},
		}},
	}
	for _, c := range cases {
		tr := newLagTracker(t0)
		for i, s := range c.steps {
			switch s.op {
			case "hb":
				tr.heartbeat(at(s.at), s.seq)
			case "done":
				tr.done(s.seq)
				tr.settled()
			case "wait":
				tr.wait(s.seq)
				tr.settled()
			case "idle":
				tr.idle(at(s.at))
			case "contact":
				tr.contact(at(s.at))
			}
			if s.want >= 0 {
				if got := tr.lag(at(s.at)); got != s.want {
					t.Errorf("%s: step %d (%s@%v): lag %v, want %v", c.name, i, s.op, s.at, got, s.want)
				}
			}
		}
	}
}

func TestLagTrackerBoundsMemory(t *testing.T) {
	t0 := time.Unix(0, 0)
	tr := newLagTracker(t0)
	for i := range 3 * maxTrackedHeartbeats {
		tr.heartbeat(t0.Add(time.Duration(i)*time.Millisecond), uint64(i+1))
	}
	if len(tr.hbs) > maxTrackedHeartbeats {
		t.Fatalf("tracking %d heartbeats", len(tr.hbs))
	}
	tr.done(uint64(3 * maxTrackedHeartbeats))
	tr.settled()
	if len(tr.hbs) != 0 || tr.lag(t0.Add(time.Duration(3*maxTrackedHeartbeats-1)*time.Millisecond)) != 0 {
		t.Fatalf("not caught up after the last heartbeat's seq: %d left", len(tr.hbs))
	}
}
