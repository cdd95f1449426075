package wait

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeT records what a helper reports instead of ending the test.
type fakeT struct{ failures []string }

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep 1ms: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a canceled context: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Sleep on a canceled context took %s", d)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep 0 on a canceled context: %v", err)
	}
	if err := Sleep(context.Background(), -time.Second); err != nil {
		t.Fatalf("Sleep of a negative duration: %v", err)
	}
}

func TestUntil(t *testing.T) {
	var n atomic.Int32
	if err := Until(context.Background(), 5*time.Second, "three calls", func() bool { return n.Add(1) >= 3 }); err != nil {
		t.Fatalf("Until: %v", err)
	}
	if n.Load() != 3 {
		t.Fatalf("cond ran %d times, want 3", n.Load())
	}
	err := Until(context.Background(), 30*time.Millisecond, "never", func() bool { return false })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never") {
		t.Fatalf("Until of a false cond: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Until(ctx, time.Hour, "canceled", func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Until on a canceled context: %v", err)
	}
}

func TestFor(t *testing.T) {
	var ok fakeT
	start := time.Now()
	For(&ok, 5*time.Second, "soon", func() bool { return time.Since(start) > 20*time.Millisecond })
	if len(ok.failures) != 0 {
		t.Fatalf("For failed on a cond that came true: %v", ok.failures)
	}
	var bad fakeT
	For(&bad, 20*time.Millisecond, "the impossible", func() bool { return false })
	if len(bad.failures) != 1 || !strings.Contains(bad.failures[0], "the impossible") {
		t.Fatalf("For on a false cond reported %v", bad.failures)
	}
}

func TestHolds(t *testing.T) {
	var ok fakeT
	var calls atomic.Int32
	Holds(&ok, 30*time.Millisecond, "truth", func() bool { calls.Add(1); return true })
	if len(ok.failures) != 0 || calls.Load() < 2 {
		t.Fatalf("Holds on a true cond: failures %v after %d calls", ok.failures, calls.Load())
	}
	var bad fakeT
	start := time.Now()
	Holds(&bad, 5*time.Second, "youth", func() bool { return time.Since(start) < 10*time.Millisecond })
	if len(bad.failures) != 1 || !strings.Contains(bad.failures[0], "youth") {
		t.Fatalf("Holds on a cond that stops holding reported %v", bad.failures)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Holds went on for %s after the cond stopped holding", d)
	}
}
