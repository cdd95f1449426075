package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geogate/geogate/conflict"
)

// Environment of the crash child: the store directory and a prefix that
// keeps each run's keys distinct.
const (
	crashDirEnv    = "GEOGATE_STORE_CRASH_CHILD"
	crashPrefixEnv = "GEOGATE_STORE_CRASH_PREFIX"
)

// crashValue is the document the child writes under key.
func crashValue(key string) string { return fmt.Sprintf(`{"key":%q}`, key) }

// TestCrashChild is the process TestCrashDurability kills. It only runs
// when started by that test: it writes from 8 goroutines with Sync on and
// prints "ack <key> <oseq>" after each acknowledged write, until killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("crash child: runs only under TestCrashDurability")
	}
	prefix := os.Getenv(crashPrefixEnv)
	opts := testOptions(dir, "us")
	opts.Clock = realClock()
	s, err := Open(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	deadline := time.Now().Add(30 * time.Second) // in case the parent is gone
	for w := range 8 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				key := fmt.Sprintf("%s/w%d/%d", prefix, w, i)
				res, err := s.Write(context.Background(), Mutation{Key: key, Value: MustParseDoc(crashValue(key))})
				if err != nil {
					fmt.Fprintf(os.Stderr, "write %s: %v\n", key, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %s %d\n", key, res.Event.OSeq)
				err = out.Flush()
				mu.Unlock()
				if err != nil {
					os.Exit(2)
				}
			}
		})
	}
	wg.Wait()
	os.Exit(3) // never reached when the parent kills us
}

// TestCrashDurability kills a writing process with SIGKILL and checks that
// every write it acknowledged is in the reopened store, with its outbox
// entry, that the outbox has no gap, and that the change log has exactly
// one entry per committed write.
func TestCrashDurability(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("inside the crash child")
	}
	runs := 3
	if testing.Short() {
		runs = 1
	}
	dir := t.TempDir()
	acked := map[string]uint64{} // key -> oseq, over all runs
	for run := range runs {
		target := 300 + 250*run // kill at a different point each run
		got := runCrashChild(t, dir, fmt.Sprintf("r%d", run), target)
		for k, o := range got {
			acked[k] = o
		}
		checkCrashedStore(t, dir, acked)
		t.Logf("run %d: killed after %d acks read (%d in total)", run, len(got), len(acked))
	}
}

// runCrashChild starts the child, kills it once it has read target acks, and
// returns every ack the child printed before it died.
func runCrashChild(t *testing.T, dir, prefix string, target int) map[string]uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashPrefixEnv+"="+prefix)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	timer := time.AfterFunc(15*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()

	acks := map[string]uint64{}
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "ack" {
			continue // test framework output
		}
		oseq, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			t.Fatalf("bad ack line %q", line)
		}
		acks[f[1]] = oseq
		if !killed && len(acks) >= target {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatalf("kill: %v", err)
			}
			killed = true
		}
		// Keep reading: acks the child printed before it died count too.
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended after %d acks without being killed (%v); stderr:\n%s", len(acks), err, stderr.String())
	}
	if st, ok := cmd.ProcessState.Sys().(interface{ Signaled() bool }); !ok || !st.Signaled() {
		t.Fatalf("child was not killed by a signal: %v; stderr:\n%s", err, stderr.String())
	}
	return acks
}

func checkCrashedStore(t *testing.T, dir string, acked map[string]uint64) {
	t.Helper()
	s, err := Open(testOptions(dir, "us"))
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()

	out := mustOutbox(t, s, 0)
	byOSeq := map[uint64]OutboxEntry{}
	for i, e := range out {
		if e.Seq != uint64(i+1) {
			t.Fatalf("outbox gap: position %d holds seq %d", i, e.Seq)
		}
		if e.Origin != s.Actor() || e.OSeq != e.Seq {
			t.Fatalf("outbox entry %d: origin %s oseq %d, want %s with oseq = seq", e.Seq, e.Origin, e.OSeq, s.Actor())
		}
		byOSeq[e.OSeq] = e
	}
	if uint64(len(out)) != s.OutboxHead() || s.Seq() != s.OutboxHead() {
		t.Fatalf("outbox has %d entries, Committed %d, Seq %d: want all equal", len(out), s.OutboxHead(), s.Seq())
	}
	// The change log commits with the writes: one entry per outbox entry
	// (every change here is a local write), gapless, naming its write.
	feed := feedOf(t, s, 0, "")
	if uint64(len(feed)) != s.FeedHead() || len(feed) != len(out) {
		t.Fatalf("change log has %d entries, FeedHead %d, outbox %d: want all equal", len(feed), s.FeedHead(), len(out))
	}
	for i, e := range feed {
		ev := decodeEvent(t, out[i].Data)
		if e.Pos != uint64(i+1) || e.Origin != s.Actor() || e.OSeq != ev.OSeq || e.Key != ev.Key {
			t.Fatalf("change %d = %s %s:%d, want %s %s:%d", e.Pos, e.Key, e.Origin, e.OSeq, ev.Key, s.Actor(), ev.OSeq)
		}
	}
	for key, oseq := range acked {
		rec, ok, err := s.Get(key)
		if err != nil || !ok {
			t.Fatalf("acknowledged %s (oseq %d) lost: ok=%v err=%v", key, oseq, ok, err)
		}
		if live := rec.Live(); len(live) != 1 || string(live[0].Value) != crashValue(key) {
			t.Fatalf("%s = %+v, want %s", key, live, crashValue(key))
		}
		e, ok := byOSeq[oseq]
		if !ok {
			t.Fatalf("acknowledged %s: no outbox entry with oseq %d", key, oseq)
		}
		if ev := decodeEvent(t, e.Data); ev.Key != key || ev.OSeq != oseq || string(ev.Version.Value) != crashValue(key) {
			t.Fatalf("outbox entry %d holds %+v, want %s's event", oseq, ev, key)
		}
	}
}

// realClock is a hybrid clock on the wall clock: a crashed and restarted
// child must not reissue timestamps from a fake clock's start.
func realClock() *conflict.Clock {
	return conflict.NewClock(conflict.WallClock, 0)
}
