package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// The pace: after a commit with company, the next one starts one commit
// duration after it ended, at most maxPaceDelay later; after a commit
// without, at once.
func TestPacerDelay(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	for _, c := range []struct {
		commit  time.Duration // duration of the last commit
		company bool
		since   time.Duration // from its end to now
		want    time.Duration
	}{
		{ms(0.3), true, 0, ms(0.3)},
		{ms(0.3), true, ms(0.1), ms(0.2)},
		{ms(0.3), true, ms(0.3), 0},
		{ms(0.3), true, ms(5), 0},
		{ms(0.3), false, 0, 0},
		{ms(4), true, 0, maxPaceDelay},
	} {
		var p pacer
		p.committed(t0, t0.Add(c.commit), c.company)
		if got := p.delay(t0.Add(c.commit + c.since)); got != c.want {
			t.Errorf("commit of %v, company %v, %v later: delay %v, want %v", c.commit, c.company, c.since, got, c.want)
		}
	}
	var zero pacer
	if d := zero.delay(t0); d != 0 {
		t.Errorf("first commit waits %v", d)
	}
}

// A lone writer never has company, so it is never paced; concurrent
// writers with Sync are, and a store without Sync never is.
func TestPacedOnlyWithCompany(t *testing.T) {
	for _, synced := range []bool{true, false} {
		t.Run(fmt.Sprintf("sync=%v", synced), func(t *testing.T) {
			s := openTest(t, "us", "", func(o *testOpts) { o.Sync = synced })
			for i := range 5 {
				mustWrite(t, s, Mutation{Key: fmt.Sprintf("lone%d", i), Value: doc(`1`)})
				s.qmu.Lock()
				c := s.pace.company
				s.qmu.Unlock()
				if c {
					t.Fatalf("write %d alone: the commit counts as having company", i)
				}
			}
			var wg sync.WaitGroup
			var paced bool
			var mu sync.Mutex
			for w := range 8 {
				wg.Go(func() {
					for i := range 20 {
						if _, err := s.Write(context.Background(), Mutation{Key: fmt.Sprintf("w%d-%d", w, i), Value: doc(`1`)}); err != nil {
							t.Error(err)
							return
						}
						s.qmu.Lock()
						c := s.pace.company
						s.qmu.Unlock()
						mu.Lock()
						paced = paced || c
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if paced != synced {
				t.Errorf("8 concurrent writers: paced %v, want %v", paced, synced)
			}
		})
	}
}
