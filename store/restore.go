package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNotEmpty is returned by Restore for a directory that holds anything.
var ErrNotEmpty = errors.New("directory is not empty")

// DirEmpty reports whether dir is missing or has no entries.
func DirEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

// Restore creates the store at opts.Dir from the snapshot in the file at
// path: it refuses a directory that is not empty (ErrNotEmpty), then reads
// the whole file once to verify it (a damaged or truncated file is refused,
// wrapping ErrSnapshot, before anything is written), then opens a new store
// there, which draws a new actor epoch, merges every record and raises the
// watermarks to the snapshot's positions (MergeSnapshot), and closes it.
// The restored region therefore never reuses a dot of the actor the
// snapshot was taken from (Riak KV679), and its links resume from the
// snapshot's positions. On failure the directory is emptied again (removed
// if Restore created it).
func Restore(ctx context.Context, opts Options, path string) (RestoreResult, error) {
	empty, err := DirEmpty(opts.Dir)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	if !empty {
		return RestoreResult{}, fmt.Errorf("restore into %s: %w: restore only fills an empty data directory", opts.Dir, ErrNotEmpty)
	}
	_, statErr := os.Stat(opts.Dir)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.Open(path)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	info, err := VerifySnapshot(f)
	if err != nil {
		return RestoreResult{Snapshot: info}, fmt.Errorf("restore from %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return RestoreResult{Snapshot: info}, fmt.Errorf("restore: %w", err)
	}
	s, err := Open(opts)
	if err != nil {
		return RestoreResult{Snapshot: info}, fmt.Errorf("restore: %w", err)
	}
	actor := s.Actor()
	merged, err := s.MergeSnapshot(ctx, f, nil)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if created {
			_ = os.RemoveAll(opts.Dir)
		} else {
			_ = removeContents(opts.Dir)
		}
		return RestoreResult{Snapshot: merged, Actor: actor}, fmt.Errorf("restore from %s: %w", path, err)
	}
	return RestoreResult{Snapshot: merged, Actor: actor}, nil
}

// RestoreResult is what Restore did.
type RestoreResult struct {
	// Snapshot describes the snapshot merged.
	Snapshot SnapshotInfo
	// Actor is the restored store's new actor.
	Actor string
}

// removeContents deletes everything inside dir, keeping dir.
func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(dir + string(os.PathSeparator) + e.Name()); err != nil {
			return err
		}
	}
	return nil
}
