package store

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Storage health. Badger writes its write-ahead log, value log and tables
// through memory-mapped files; on a full filesystem the kernel cannot back
// a page Badger writes to, and the process dies of SIGBUS instead of seeing
// an error. The store therefore never lets its filesystem fill up: a
// watcher reads the free space of the store's directory (statfs) every
// defaultSpaceCheckInterval, and the writer checks it before every commit.
// Below Options.MinFreeBytes the store refuses local writes and replicated
// applies (ErrInsufficientStorage) and keeps serving reads; once free space
// is back above the bound plus a tenth of it (hysteresis, so it does not
// flap), it takes writes again by itself. Outbox trims still commit (they
// delete), and value-log collection waits.
//
// A commit that fails for any other reason (an I/O error, a filesystem
// remounted read-only), or a filesystem found read-only, puts the store in
// the failed state: it refuses every write and apply from then on
// (ErrStorageFailed) without touching the disk again, and stays so until the
// process restarts on a repaired disk. It refuses reads too: after a write
// error Badger's view can no longer be trusted (in TestIOErrorFailsStorage
// compactions that failed half-way hid acknowledged keys from reads until
// the store was reopened), the lesson PostgreSQL and Pebble drew from
// fsync failures. What was acknowledged before is on disk (each
// acknowledgement followed a successful commit, synced under Options.Sync),
// and reopening the store on the repaired disk finds it; the failed commit's
// requests were answered with the error, so none of them was acknowledged.
// The region stays up meanwhile: its status and metrics say why.

// StorageState is the store's storage health (Store.Storage).
type StorageState string

// Storage states.
const (
	// StorageOK: writes and applies are taken.
	StorageOK StorageState = "ok"
	// StorageLowSpace: free space is below Options.MinFreeBytes; writes
	// and applies are refused until it returns.
	StorageLowSpace StorageState = "low_space"
	// StorageFailed: a commit failed (I/O error, read-only filesystem);
	// reads, writes and applies are refused until a restart.
	StorageFailed StorageState = "failed"
)

var (
	// ErrInsufficientStorage is returned, wrapped, for a write or apply
	// refused because free space is below Options.MinFreeBytes. Nothing
	// was written; the same request succeeds once space returns.
	ErrInsufficientStorage = errors.New("insufficient storage")
	// ErrStorageFailed is returned, wrapped, for a write or apply refused
	// because an earlier commit failed: the store no longer writes to its
	// disk until the process restarts.
	ErrStorageFailed = errors.New("storage failed")
)

// StorageStatus is a snapshot of the store's storage health.
type StorageStatus struct {
	State StorageState `json:"state"`
	// Reason says why the state is not ok.
	Reason string `json:"reason,omitempty"`
	// Since is when the current state began.
	Since time.Time `json:"since"`
	// FreeBytes is the free space of the store's filesystem at the last
	// check, for unprivileged users (statfs f_bavail).
	FreeBytes uint64 `json:"free_bytes"`
	// MinFreeBytes is Options.MinFreeBytes.
	MinFreeBytes uint64 `json:"min_free_bytes"`
}

// DefaultMinFreeBytes is Options.MinFreeBytes' default: room for Badger to
// flush a memtable (64 MiB with the default options) and to write the
// output of a level-0 compaction before deleting its inputs (up to five
// level-0 tables plus level 1, a few hundred MiB), with margin for the
// writes accepted between two checks.
const DefaultMinFreeBytes = 512 << 20

// SmallFootprintMinFreeBytes is Options.MinFreeBytes' default with
// Options.SmallFootprint, whose memtables are 16 MiB.
const SmallFootprintMinFreeBytes = 64 << 20

// defaultSpaceCheckInterval is how often the watcher reads free space.
const defaultSpaceCheckInterval = 250 * time.Millisecond

// FreeSpace returns the bytes available to unprivileged users on the
// filesystem holding dir, and whether that filesystem is mounted
// read-only.
func FreeSpace(dir string) (free uint64, readOnly bool, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	const stRDONLY = 1 // ST_RDONLY
	return st.Bavail * uint64(st.Bsize), st.Flags&stRDONLY != 0, nil
}

// storageHealth tracks StorageState. Safe for concurrent use.
type storageHealth struct {
	dir string
	min uint64 // 0: free space is not watched

	mu      sync.Mutex
	status  StorageStatus
	checked time.Time // last reading of the free space
}

func newStorageHealth(dir string, min uint64, now time.Time) *storageHealth {
	return &storageHealth{dir: dir, min: min, status: StorageStatus{State: StorageOK, Since: now, MinFreeBytes: min}}
}

// check reads the free space and moves between ok and low_space; a failed
// store stays failed. A read-only filesystem, or a statfs that fails, is a
// failure of the storage.
func (h *storageHealth) check(now time.Time) StorageStatus {
	free, ro, err := FreeSpace(h.dir)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checked = now
	if h.status.State == StorageFailed {
		if err == nil {
			h.status.FreeBytes = free
		}
		return h.status
	}
	switch {
	case err != nil:
		h.setLocked(StorageFailed, err.Error(), now)
	case ro:
		h.setLocked(StorageFailed, fmt.Sprintf("the filesystem of %s is mounted read-only", h.dir), now)
	case h.min == 0:
		h.setLocked(StorageOK, "", now)
	case free < h.min:
		h.setLocked(StorageLowSpace, fmt.Sprintf("%d bytes free on the filesystem of %s, below storage.min_free_bytes (%d): writes are refused until space is freed", free, h.dir, h.min), now)
	case h.status.State == StorageLowSpace && free < h.min+h.min/10:
		// Hysteresis: stay low until a tenth more than the bound is free.
	default:
		h.setLocked(StorageOK, "", now)
	}
	h.status.FreeBytes = free
	return h.status
}

// recheckEvery bounds how stale the writer's view of the free space may be
// when it commits: a commit re-reads it when the last reading is older.
const recheckEvery = 20 * time.Millisecond

// recheck returns the status, re-reading the free space first when the
// last reading is older than recheckEvery (the writer, before a commit).
func (h *storageHealth) recheck(now time.Time) StorageStatus {
	h.mu.Lock()
	fresh := now.Sub(h.checked) < recheckEvery || h.min == 0
	st := h.status
	h.mu.Unlock()
	if fresh {
		return st
	}
	return h.check(now)
}

// fail puts the store in the failed state for good (until restart).
func (h *storageHealth) fail(reason string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.status.State != StorageFailed {
		h.setLocked(StorageFailed, reason, now)
	}
}

func (h *storageHealth) setLocked(state StorageState, reason string, now time.Time) {
	if h.status.State != state {
		h.status.Since = now
	}
	h.status.State, h.status.Reason = state, reason
}

func (h *storageHealth) get() StorageStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

// refusal returns the error a write or apply gets in the current state,
// nil when it may proceed.
func (s StorageStatus) refusal() error {
	switch s.State {
	case StorageLowSpace:
		return fmt.Errorf("%w: %s", ErrInsufficientStorage, s.Reason)
	case StorageFailed:
		return fmt.Errorf("%w: %s; restart the region once its disk is repaired", ErrStorageFailed, s.Reason)
	}
	return nil
}

// Storage returns the store's storage health.
func (s *Store) Storage() StorageStatus { return s.health.get() }

// watchSpace re-checks the free space every interval until Close begins,
// logging every change of state.
func (s *Store) watchSpace(interval time.Duration) {
	defer close(s.spaceDone)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := s.health.get().State
	for {
		select {
		case <-tick.C:
		case <-s.stop:
			return
		}
		st := s.health.check(time.Now())
		if st.State == last {
			continue
		}
		last = st.State
		switch st.State {
		case StorageOK:
			s.log.Info("storage: free space is back; taking writes again", "free_bytes", st.FreeBytes, "min_free_bytes", st.MinFreeBytes)
		case StorageLowSpace:
			s.log.Error("storage: refusing writes and applies; serving reads", "state", st.State, "reason", st.Reason)
		default:
			s.log.Error("storage: failed; refusing reads, writes and applies until restart", "state", st.State, "reason", st.Reason)
		}
	}
}

// commitFailed reports whether a commit error means the storage failed (as
// opposed to a store closing or a transaction that was too large).
func commitFailed(err error) bool {
	return !errors.Is(err, badger.ErrTxnTooBig) && !errors.Is(err, badger.ErrBlockedWrites) &&
		!errors.Is(err, badger.ErrDBClosed) && !errors.Is(err, ErrClosed)
}
