package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// vlogBytes is the size of the value-log files in dir.
func vlogBytes(t *testing.T, dir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestValueLogReclaimed overwrites a key with values large enough for the
// value log and lets the outbox entries that carried them be trimmed: the
// store's periodic value-log collection gives the space back, and the key
// still holds its last value, before and after a restart.
func TestValueLogReclaimed(t *testing.T) {
	dir := t.TempDir()
	small := func(gc time.Duration) func(o *testOpts) {
		return func(o *testOpts) {
			o.valueLogGC = gc
			o.tuneBadger = func(bo badger.Options) badger.Options {
				return bo.WithMemTableSize(1 << 20).WithValueLogFileSize(1 << 20)
			}
		}
	}
	// First without collection, to see the garbage pile up.
	s := openTest(t, "us", dir, small(-1))
	const versions = 60
	big := strings.Repeat("x", 100<<10) // over the value threshold
	for i := range versions {
		mustWrite(t, s, Mutation{Key: "big", Value: doc(`{"i":%d,"pad":"%s"}`, i, big), Supersede: true})
	}
	if err := s.TrimOutbox(s.OutboxHead()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "outbox trimmed", func() bool { return s.OutboxLen() == 0 })
	// Flush the memtables and compact, so Badger's discard statistics know
	// which value-log bytes are garbage.
	for i := range 600 {
		mustWrite(t, s, Mutation{Key: fmt.Sprintf("filler/%d", i), Value: doc(`"%s"`, strings.Repeat("f", 4<<10))})
	}
	if err := s.db.Flatten(1); err != nil {
		t.Fatalf("flatten: %v", err)
	}
	garbage := vlogBytes(t, dir)
	// Every version went to the value log twice: in its record and in
	// its outbox entry.
	if want := int64(2 * versions * len(big)); garbage < want {
		t.Fatalf("value log holds %d bytes before collection, want at least the %d written", garbage, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, "us", dir, small(20*time.Millisecond))
	eventually(t, 20*time.Second, "value log reclaimed", func() bool {
		if err := s.db.Flatten(1); err != nil {
			t.Fatalf("flatten: %v", err)
		}
		return vlogBytes(t, dir) < garbage/4
	})
	check := func(s *Store) {
		t.Helper()
		rec := mustGet(t, s, "big")
		if got := liveValues(rec); !strings.HasPrefix(got, fmt.Sprintf(`{"i":%d,`, versions-1)) || len(got) < len(big) {
			t.Fatalf("big holds %.40q..., want version %d", got, versions-1)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openTest(t, "us", dir, small(-1)))
	t.Logf("value log: %d bytes of garbage, %d after collection", garbage, vlogBytes(t, dir))
}
