package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
)

// Conflict observation. The writer does not run the Observer's judgement
// (rule expressions, logging, metrics) inside its transaction, where every
// other write of the region would wait for it. It asks only Notable, a
// pure and quick test, and stores each notable change in the same
// transaction as the change itself, as a pending observation under
// n/<seq>. After the commit the store's observer goroutine reads the
// pending observations in order, calls Observe on each, and hands the
// conflict-log entries back to the writer, which appends them and removes
// the pending observations in one transaction. So:
//
//   - an observation is as durable as its change: a crash after the commit
//     leaves it pending, and it is observed after the restart (or by the
//     region's next leader, which holds it through the region log);
//   - entries are appended exactly once, in the order the changes
//     committed, and OnConflicts receives them in that order;
//   - none is dropped: the queue is on disk, bounded by the storage guard
//     only; PendingObservations counts what waits, and Conflicts waits
//     for the changes committed before it began (WaitObserved).

// prefixObserve is the key space of pending observations: n/<seq:8>, seq
// from 1 in commit order for the region's lifetime (keyObserved carries it
// across an empty queue), gapless from the oldest to the newest.
var prefixObserve = []byte("n/")

// observeBatch is the most pending observations one turn of the observer
// goroutine takes (and so the most the writer appends in one commit).
const observeBatch = 256

// ObserveWait bounds how long Conflicts waits for the observer to take the
// changes committed before the call.
const ObserveWait = 5 * time.Second

// ErrObserving is returned, wrapped, by Conflicts when changes committed
// before the call were still waiting for the observer after ObserveWait
// (a conflict storm, or a storage that refuses the entries): the log would
// miss their entries. Retry later.
var ErrObserving = errors.New("the conflict log has not yet taken every change committed before this read")

// The format byte of a stored pending observation (see the format bytes in
// codec.go): C for a change.
const changeV1 = 0xC1

// Change flags in a stored observation.
const (
	changeLocal = 1 << iota
	changeMerged
	changeSkewed
	changeAdded
	changeHasEvent
)

// appendChange appends the stored form of a pending observation:
//
//	0xC1 flags key before after superseded [event]
//
// with the records (before, after, and the superseded versions as a record
// of their own) in AppendRecord's encoding and the event in AppendEvent's,
// each preceded by its length, the event only when the change has one
// (a merge has none).
func appendChange(b []byte, c Change) []byte {
	flags := byte(0)
	for _, f := range []struct {
		on  bool
		bit byte
	}{{c.Local, changeLocal}, {c.Merged, changeMerged}, {c.Skewed, changeSkewed}, {c.Outcome.Added, changeAdded}, {c.Event.Version.Dot.Actor != "", changeHasEvent}} {
		if f.on {
			flags |= f.bit
		}
	}
	b = append(b, changeV1, flags)
	b = appendBytes(b, c.Key)
	b = appendBytes(b, AppendRecord(nil, c.Before))
	b = appendBytes(b, AppendRecord(nil, c.After))
	b = appendBytes(b, AppendRecord(nil, conflict.Record{Versions: c.Outcome.Superseded}))
	if flags&changeHasEvent != 0 {
		b = appendBytes(b, AppendEvent(nil, c.Event))
	}
	return b
}

// decodeChange decodes a pending observation written by appendChange. It
// never panics; malformed input yields an error wrapping ErrMalformed.
func decodeChange(b []byte) (Change, error) {
	if len(b) < 2 || b[0] != changeV1 {
		return Change{}, fmt.Errorf("decode observation: %w", formatError(b))
	}
	flags := b[1]
	r := reader{b: b[2:]}
	c := Change{Key: r.str("key"), Local: flags&changeLocal != 0, Merged: flags&changeMerged != 0, Skewed: flags&changeSkewed != 0}
	c.Outcome.Added = flags&changeAdded != 0
	before, after, superseded := r.bytes("before"), r.bytes("after"), r.bytes("superseded")
	var event []byte
	if flags&changeHasEvent != 0 {
		event = r.bytes("event")
	}
	r.end()
	if r.err != nil {
		return Change{}, fmt.Errorf("decode observation: %w", r.err)
	}
	var err error
	record := func(b []byte) conflict.Record {
		rec, e := DecodeRecord(b)
		if e != nil && err == nil {
			err = e
		}
		if len(rec.Versions) == 0 {
			rec.Versions = nil // as the writer saw a key it had not stored
		}
		return rec
	}
	c.Before, c.After = record(before), record(after)
	c.Outcome.Superseded = record(superseded).Versions
	if event != nil && err == nil {
		c.Event, err = DecodeEvent(event)
	}
	if err != nil {
		return Change{}, fmt.Errorf("decode observation of %q: %w", c.Key, err)
	}
	return c, nil
}

// observe runs in the writer for each record change a request made: a
// change the Observer calls notable is stored as a pending observation in
// the batch's transaction.
func (s *Store) observe(st *batchState, c Change) error {
	if s.opts.Observer == nil || !s.opts.Observer.Notable(c) {
		return nil
	}
	s.nseq++
	if err := st.txn.Set(seqKey(prefixObserve, s.nseq), appendChange(nil, c)); err != nil {
		return fmt.Errorf("observation %d of %q: %w", s.nseq, c.Key, err)
	}
	st.observed = true
	return nil
}

// observedRequest is a turn of the observer goroutine for the writer: the
// conflict-log entries of the pending observations from through through,
// in order, to append as it removes those observations.
type observedRequest struct {
	from, through uint64
	entries       []ConflictEntry
}

// doObserved runs an observedRequest in the writer. One that no longer
// starts at the oldest pending observation (another node of the region
// took these while this one did not lead) is refused, changing nothing.
func (s *Store) doObserved(st *batchState, o *observedRequest, stats *Stats) error {
	if o.from != s.nfirst || o.through > s.nseq {
		return &refusedError{fmt.Errorf("observations %d to %d: %w", o.from, o.through, errStaleObservations)}
	}
	for _, e := range o.entries {
		if err := s.appendConflict(st, e); err != nil {
			return err
		}
		stats.Conflicts++
	}
	for q := o.from; q <= o.through; q++ {
		if err := st.txn.Delete(seqKey(prefixObserve, q)); err != nil {
			return fmt.Errorf("observation %d: %w", q, err)
		}
	}
	if err := st.txn.Set(keyObserved, encodeU64(s.nseq)); err != nil {
		return fmt.Errorf("observations %d to %d: %w", o.from, o.through, err)
	}
	s.nfirst = o.through + 1
	return nil
}

// errStaleObservations refuses an observedRequest read before another
// node's turn changed the pending observations.
var errStaleObservations = errors.New("the pending observations changed since they were read")

// observeLoop is the observer goroutine: each signal (a commit stored
// pending observations, the store began to lead, Open found some) makes it
// take every pending observation, observeBatch at a time. It returns once
// Close begins.
func (s *Store) observeLoop() {
	defer close(s.observeDone)
	select {
	case <-s.stop:
		return
	case <-s.observeStart:
	}
	for {
		select {
		case <-s.stop:
			return
		case <-s.observeCh:
		}
		for s.observeTurn() {
		}
	}
}

// observeTurn observes up to observeBatch pending observations, fewer when
// their entries would outgrow half a transaction, and has the writer
// append the entries; it reports whether to take another turn at once
// (more were pending). A store that follows, or holds no Observer,
// leaves its pending observations to the region's leader (or a later
// start). Failed appends are retried with a backoff until Close, the
// entries computed once: Observe is called once per observation and run,
// at least once across crashes.
func (s *Store) observeTurn() bool {
	if s.opts.Observer == nil || s.Role() == Following || s.copying.Load() {
		return false
	}
	type pending struct {
		seq    uint64
		change Change
		err    error // it does not decode
	}
	var read []pending
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixObserve, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(read) < observeBatch; it.Next() {
			p := pending{seq: seqFromKey(prefixObserve, it.Item().Key())}
			p.err = it.Item().Value(func(v []byte) error {
				var err error
				p.change, err = decodeChange(v)
				return err
			})
			read = append(read, p)
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			s.log.Error("read pending conflict observations", "err", err)
		}
		return false
	}
	if len(read) == 0 {
		return false
	}
	// Observe them in order, as many as one transaction takes (the
	// entries carry the versions, whole).
	req := &observedRequest{from: read[0].seq}
	lost, size := 0, 0
	for i, p := range read {
		if i > 0 && size >= s.batchBytes/2 {
			break
		}
		req.through = p.seq
		if p.err != nil {
			// Altered on disk: nothing can be observed of it. Said
			// loudly, counted, and removed, so the queue moves on.
			s.log.Error("a pending conflict observation does not decode; it is dropped", "seq", p.seq, "err", p.err)
			lost++
			continue
		}
		for _, e := range s.opts.Observer.Observe(p.change) {
			req.entries = append(req.entries, e)
			size += e.size()
		}
	}
	more := req.through < read[len(read)-1].seq || len(read) == observeBatch
	bo := newObserveBackoff()
	for {
		r := requestPool.Get().(*request)
		r.observed = req
		_, err := s.submit(context.Background(), r)
		switch {
		case err == nil:
			if lost > 0 {
				s.mu.Lock()
				s.stats.LostObservations += uint64(lost)
				s.mu.Unlock()
			}
			return more
		case errors.Is(err, ErrClosed):
			return false
		case errors.Is(err, ErrNotLeader), errors.Is(err, errStaleObservations), errors.Is(err, ErrLogUnknown):
			// Another node leads, or led meanwhile: the region's
			// leader observes them.
			return false
		}
		s.log.Warn("appending conflict-log entries failed; retrying", "observations", req.through-req.from+1, "err", err)
		select {
		case <-s.stop:
			return false
		case <-time.After(bo.next()):
		}
	}
}

// observeBackoff spaces the observer's retries: 50ms doubling to 5s.
type observeBackoff struct{ d time.Duration }

func newObserveBackoff() *observeBackoff { return &observeBackoff{d: 50 * time.Millisecond} }

func (b *observeBackoff) next() time.Duration {
	d := b.d
	b.d = min(2*b.d, 5*time.Second)
	return d
}

// StartObserving lets the store call its Observer: before it, changes
// that need observing are stored as pending and wait. The owner calls it
// once whatever Observe reads is in place (the store may hold changes a
// crash left unobserved, which it observes at once). It is idempotent.
func (s *Store) StartObserving() {
	s.startOnce.Do(func() { close(s.observeStart) })
}

// signalObserver wakes the observer goroutine (signals coalesce).
func (s *Store) signalObserver() {
	select {
	case s.observeCh <- struct{}{}:
	default:
	}
}

// PendingObservations returns how many committed changes wait for the
// observer (their conflict-log entries are not appended yet).
func (s *Store) PendingObservations() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pendingHead - s.observedThrough
}

// WaitObserved waits, up to ObserveWait, until the observer has taken
// every change committed before the call (Observe has run on it and its
// entries are committed), so that what the Observer keeps, and the
// conflict log, reflect those changes. It fails with an error wrapping
// ErrObserving when they still wait, ErrClosed once Close began. A store
// without an Observer never waits.
func (s *Store) WaitObserved() error {
	if s.opts.Observer == nil {
		return nil
	}
	var timeout <-chan time.Time
	s.mu.Lock()
	target := s.pendingHead
	for s.observedThrough < target {
		if timeout == nil {
			t := time.NewTimer(s.hooks.observeWait)
			defer t.Stop()
			timeout = t.C
		}
		ch := s.changed
		s.waiters = true
		missing := target - s.observedThrough
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.stop:
			return ErrClosed
		case <-timeout:
			return fmt.Errorf("%w: %d changes still wait after %s", ErrObserving, missing, s.hooks.observeWait)
		}
		s.mu.Lock()
	}
	s.mu.Unlock()
	return nil
}

// loadObservations derives the pending observations' bounds from the keys
// and keyObserved (Open, reload): with none pending, numbering goes on
// after the last number assigned, so that every node of a region numbers
// alike whenever it restarted.
func (s *Store) loadObservations(txn *badger.Txn) error {
	s.nseq = 0
	if err := getU64(txn, keyObserved, &s.nseq); err != nil {
		return err
	}
	s.nfirst = s.nseq + 1
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixObserve})
	if it.Rewind(); it.Valid() {
		s.nfirst = seqFromKey(prefixObserve, it.Item().Key())
	}
	it.Close()
	rit := txn.NewIterator(badger.IteratorOptions{Prefix: prefixObserve, Reverse: true})
	if rit.Seek(seqKey(prefixObserve, ^uint64(0))); rit.Valid() {
		s.nseq = max(s.nseq, seqFromKey(prefixObserve, rit.Item().Key()))
	}
	rit.Close()
	s.mu.Lock()
	s.pendingHead, s.observedThrough = s.nseq, s.nfirst-1
	s.mu.Unlock()
	return nil
}

// absorbObservation keeps a follower's bounds of the pending observations
// as the region log's effects set and delete them. With none pending, the
// leader's number is taken as it comes: a store written before
// keyObserved existed may have restarted its numbering.
func (s *Store) absorbObservation(k []byte, set bool) {
	seq := binary.BigEndian.Uint64(k[len(prefixObserve):])
	switch {
	case set && s.nfirst > s.nseq:
		s.nseq, s.nfirst = seq, seq
	case set:
		s.nseq = max(s.nseq, seq)
	default:
		s.nfirst = max(s.nfirst, seq+1)
	}
}
