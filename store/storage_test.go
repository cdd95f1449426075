package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/testbed/diskfault"
)

// smallBadger makes Badger flush and rotate files after little data, so a
// test on a filesystem of a few dozen MiB exercises them.
func smallBadger(o *testOpts) {
	o.tuneBadger = func(bo badger.Options) badger.Options {
		return bo.WithMemTableSize(1 << 20).WithValueLogFileSize(2 << 20).WithBaseTableSize(256 << 10).
			WithBlockCacheSize(1 << 20)
	}
}

// mountOrSkip mounts a tmpfs of size bytes for the test, or skips it,
// saying why, where this process may not mount filesystems.
func mountOrSkip(t *testing.T, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	unmount, err := diskfault.MountTmpfs(dir, size)
	if errors.Is(err, diskfault.ErrUnsupported) {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unmount(); err != nil {
			t.Error(err)
		}
	})
	return dir
}

// TestLowSpaceRefusesWritesAndResumes runs a store on a real 96 MiB tmpfs,
// fills it up to below storage.min_free_bytes with a ballast file, and
// checks that writes and applies are refused with ErrInsufficientStorage
// (not a crash: Badger writes through memory maps and dies of SIGBUS when a
// write finds no room), that reads go on, and that writes resume by
// themselves once the ballast is gone, with every acknowledged write
// readable.
func TestLowSpaceRefusesWritesAndResumes(t *testing.T) {
	fs := mountOrSkip(t, 96<<20)
	s := openTest(t, "us", filepath.Join(fs, "store"), func(o *testOpts) {
		smallBadger(o)
		o.MinFreeBytes = 16 << 20
		o.spaceCheck = 20 * time.Millisecond
	})
	var acked []string
	write := func(key string) error {
		_, err := s.Write(t.Context(), Mutation{Key: key, Value: doc(`{"pad":%q}`, strings.Repeat("x", 4096))})
		if err == nil {
			acked = append(acked, key)
		}
		return err
	}
	for i := range 100 {
		if err := write(fmt.Sprintf("before/%d", i)); err != nil {
			t.Fatalf("write before the disk filled: %v", err)
		}
	}
	release, err := diskfault.Fill(fs, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	var refused error
	eventually(t, 5*time.Second, "a write refused for lack of space", func() bool {
		refused = write(fmt.Sprintf("during/%d", len(acked)))
		return refused != nil
	})
	if !errors.Is(refused, ErrInsufficientStorage) {
		t.Fatalf("write on a full disk: %v, want ErrInsufficientStorage", refused)
	}
	if st := s.Storage(); st.State != StorageLowSpace || !strings.Contains(st.Reason, "min_free_bytes") {
		t.Fatalf("storage status %+v, want low_space naming min_free_bytes", st)
	}
	evs, _ := threeEvents(t)
	if _, err := s.Apply(t.Context(), []Incoming{evs[0].incoming()}); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("apply on a full disk: %v, want ErrInsufficientStorage", err)
	}
	for _, key := range acked {
		mustGet(t, s, key) // reads go on
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "writes to resume once space is back", func() bool {
		return write(fmt.Sprintf("after/%d", len(acked))) == nil
	})
	if st := s.Storage(); st.State != StorageOK {
		t.Fatalf("storage status %+v after the space came back", st)
	}
	mustApply(t, s, evs[0].incoming())
	for _, key := range acked {
		mustGet(t, s, key)
	}
}

// ioChildEnv names the store directory of TestIOErrorChild;
// ioChildLeadsEnv, if set, makes its store the leader of a region of
// several nodes (a region log in memory).
const (
	ioChildEnv      = "GEOGATE_STORE_IOERROR_CHILD"
	ioChildLeadsEnv = "GEOGATE_STORE_IOERROR_LEADS"
)

// TestIOErrorChild is the process TestIOErrorFailsStorage runs on the
// failing disk. It only runs when started by that test: it writes until a
// write fails, printing "ack <key>" after each acknowledged one, then
// checks that writes, applies and reads are refused with ErrStorageFailed
// and that Close returns at once, prints "refused" and "closed",
// and waits to be killed (the restart of a real region).
func TestIOErrorChild(t *testing.T) {
	dir := os.Getenv(ioChildEnv)
	if dir == "" {
		t.Skip("runs only under TestIOErrorFailsStorage")
	}
	die := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
		os.Exit(2)
	}
	opts := testOpts{Options: testOptions(dir, "us")}
	smallBadger(&opts)
	opts.MinFreeBytes = 8 << 20
	leads := os.Getenv(ioChildLeadsEnv) != ""
	opts.Clustered = leads
	s, err := open(opts.Options, opts.hooks)
	if err != nil {
		die("open: %v", err)
	}
	if leads {
		if err := s.Lead(context.Background(), 1, 0, memAppender{&memLog{}, 1}); err != nil {
			die("lead: %v", err)
		}
	}
	var failure error
	var first string
	for i := 0; i < 200_000; i++ {
		key := fmt.Sprintf("k/%d", i)
		if _, err := s.Write(context.Background(), Mutation{Key: key, Value: doc(`{"pad":%q}`, strings.Repeat("y", 2048))}); err != nil {
			failure = err
			break
		}
		if first == "" {
			first = key
		}
		fmt.Printf("ack %s\n", key)
	}
	if failure == nil || first == "" {
		die("the failing disk never failed a write (or failed the first one: %v)", failure)
	}
	fmt.Fprintf(os.Stderr, "write failed: %v\n", failure)
	// A leader's failed commit came after the region log took the batch,
	// which the region's next leader applies: its outcome is unknown to
	// the client. A region of one node has no such log.
	if unknown := errors.Is(failure, ErrLogUnknown); unknown != leads {
		die("the failed write's error %q: outcome unknown %v, want %v (leader of several nodes: %v)", failure, unknown, leads, leads)
	}
	if st := s.Storage(); st.State != StorageFailed || st.Reason == "" {
		die("storage status %+v after an I/O error, want failed with a reason", st)
	}
	if _, err := s.Write(context.Background(), Mutation{Key: "later", Value: doc(`1`)}); !errors.Is(err, ErrStorageFailed) {
		die("write after the failure: %v, want ErrStorageFailed", err)
	}
	ev := conflict.Event{Key: "x", OSeq: 1, Version: conflict.Version{Dot: conflict.Dot{Actor: "eu~1", Counter: 1}, Origin: "eu", Value: []byte(`1`)}}
	if _, err := s.Apply(context.Background(), []Incoming{{Event: ev}}); !errors.Is(err, ErrStorageFailed) {
		die("apply after the failure: %v, want ErrStorageFailed", err)
	}
	if _, _, err := s.Get(first); !errors.Is(err, ErrStorageFailed) {
		die("read after the failure: %v, want ErrStorageFailed", err)
	}
	fmt.Println("refused")
	start := time.Now()
	err = s.Close()
	if time.Since(start) > 10*time.Second {
		die("Close took %s on the failed disk", time.Since(start))
	}
	fmt.Fprintf(os.Stderr, "close: %v\n", err)
	fmt.Println("closed")
	time.Sleep(time.Minute) // killed by the parent
	os.Exit(3)
}

// TestIOErrorFailsStorage runs a store, in a child process, on an ext4
// filesystem whose device starts failing writes with I/O errors (its
// backing store fills up) while statfs still shows plenty of room. The
// child checks that the commit meeting the error is not acknowledged, that
// the store then refuses writes, applies and reads with ErrStorageFailed
// without crashing, and that Close returns; the parent then kills it.
//
// What such a disk keeps is not checked: in this setup the kernel
// acknowledged the syncs of the last few writes before the failure
// without storing them (the device is a full thin-provisioned one:
// "critical space allocation error" in the kernel log, the bytes absent from
// the image), and Badger's compactions of those moments could leave its
// manifest naming a table that was never written. A region whose storage
// failed is to be repaired and restarted, or rebuilt from its peers.
func TestIOErrorFailsStorage(t *testing.T) {
	if os.Getenv(ioChildEnv) != "" {
		t.Skip("inside the child")
	}
	disk := failingDisk(t, 256<<20, 40<<20)
	runIOChild(t, filepath.Join(disk.Dir, "store"), nil)
}

// TestIOErrorLeaderAnswersUnknown: the same failing disk under the leader
// of a region of several nodes. The region log took the batch before the
// commit failed, so the client is told its write's outcome is unknown
// (the region's next leader applies it), not that it failed.
func TestIOErrorLeaderAnswersUnknown(t *testing.T) {
	if os.Getenv(ioChildEnv) != "" {
		t.Skip("inside the child")
	}
	disk := failingDisk(t, 256<<20, 40<<20)
	runIOChild(t, filepath.Join(disk.Dir, "store"), nil, ioChildLeadsEnv+"=1")
}

// failingDisk makes a diskfault.FailingDisk for the test (skipping it
// where the machine cannot) and removes it at the end.
func failingDisk(t *testing.T, fsSize, backing int64) *diskfault.FailingDisk {
	t.Helper()
	disk, err := diskfault.NewFailingDisk(filepath.Join(t.TempDir(), "ext4"), fsSize, backing)
	if errors.Is(err, diskfault.ErrUnsupported) {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := disk.Close(); err != nil {
			t.Error(err)
		}
	})
	return disk
}

// runIOChild runs TestIOErrorChild on a store in dir and returns the keys
// it acknowledged; afterAck, if set, is called with the count after each
// acknowledgement (the caller's moment to break the disk). It fails the
// test unless the child met the failure, refused what followed and
// closed the store.
func runIOChild(t *testing.T, dir string, afterAck func(n int), env ...string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIOErrorChild$", "-test.v=false")
	cmd.Env = append(append(os.Environ(), ioChildEnv+"="+dir), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	var refused, closed bool
	sc := bufio.NewScanner(stdout)
	for !closed && sc.Scan() {
		switch line := sc.Text(); {
		case strings.HasPrefix(line, "ack "):
			acked = append(acked, strings.TrimPrefix(line, "ack "))
			if afterAck != nil {
				afterAck(len(acked))
			}
		case line == "refused":
			refused = true
		case line == "closed":
			closed = true
		}
	}
	cmd.Process.Kill() //nolint:errcheck // it may have died already
	cmd.Wait()         //nolint:errcheck // killed
	t.Logf("child: %d writes acknowledged; %s", len(acked), strings.TrimSpace(stderr.String()))
	if !refused || !closed {
		t.Fatalf("the child did not get through the failure (refused %v, closed %v): %s", refused, closed, stderr.String())
	}
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged before the failure")
	}
	return acked
}

// TestReadOnlyFilesystemFailsStorage: the filesystem under a writing store
// turns read-only (ext4's errors=remount-ro, triggered through sysfs as an
// error the filesystem found itself would, with a healthy device). The
// store in the child refuses what follows with ErrStorageFailed and
// closes; mounted again, the filesystem holds every write the child
// acknowledged, and the store opens on it.
func TestReadOnlyFilesystemFailsStorage(t *testing.T) {
	if os.Getenv(ioChildEnv) != "" {
		t.Skip("inside the child")
	}
	disk := failingDisk(t, 256<<20, 320<<20)
	dir := filepath.Join(disk.Dir, "store")
	acked := runIOChild(t, dir, func(n int) {
		if n == 200 {
			if err := disk.TriggerError(); errors.Is(err, diskfault.ErrUnsupported) {
				t.Skipf("skipped: %v", err)
			} else if err != nil {
				t.Fatal(err)
			}
		}
	})
	if err := disk.Remount(); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, "us", dir, smallBadger)
	for _, k := range acked {
		if _, ok, err := s.Get(k); err != nil || !ok {
			t.Fatalf("acknowledged %s (of %d) missing after the filesystem was mounted again: %v", k, len(acked), err)
		}
	}
}
