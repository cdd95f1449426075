// Package wait is how geogate waits for something: a pause that ends early
// when its context does (Sleep), a poll with a deadline for a condition to
// come true (Until), and the same two polls for tests, which fail the test
// instead of returning an error (For, Holds). Every package and every test
// uses these instead of its own loop, so a test never stands a time.Sleep in
// for synchronisation and every wait has a deadline.
package wait

import (
	"context"
	"fmt"
	"time"
)

// Poll intervals: a poll starts at minPoll and doubles up to maxPoll, so a
// condition that comes true at once is seen within a millisecond and a slow
// one (an HTTP round trip, a replication) is not asked more than fifty
// times a second.
const (
	minPoll = time.Millisecond
	maxPoll = 20 * time.Millisecond
)

// Sleep waits d, or less if ctx ends first. It returns nil when d elapsed
// and ctx.Err() when ctx ended; d <= 0 returns at once (nil, unless ctx has
// already ended).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Until polls cond until it holds (nil), ctx ends or within passes. The
// error names what was awaited and wraps context.DeadlineExceeded (within
// passed) or ctx's error. cond runs on the calling goroutine, first at once.
func Until(ctx context.Context, within time.Duration, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for every := minPoll; !cond(); every = min(2*every, maxPoll) {
		if err := Sleep(ctx, every); err != nil {
			return fmt.Errorf("waiting %s for %s: %w", within, what, err)
		}
	}
	return nil
}

// T is the part of testing.TB the test helpers use (testing.TB satisfies
// it; this package does not import testing).
type T interface {
	Helper()
	Fatalf(format string, args ...any)
}

// For polls cond until it holds, and fails t (Fatalf, naming what and
// within) if it does not within the given time: a test's "eventually".
func For(t T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Until(context.Background(), within, what, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s", within, what)
	}
}

// Holds polls cond for d and fails t (Fatalf, naming what) the first time
// it does not hold: a test's "nothing happens", the counterpart of For.
// cond is checked at least twice, at the start and at the end of d.
func Holds(t T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for every := minPoll; ; every = min(2*every, maxPoll) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		time.Sleep(min(every, left))
	}
}
