package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
)

// Regions of several nodes. One node leads: its store takes writes, applies
// replicated events and runs the lifecycle, as a region of one node does,
// and before each commit it hands the commit's effects (every key the
// transaction sets or deletes, in order) to a Replicator, which appends them
// to the region log; the commit proceeds only once the log has them. The
// other nodes follow: their stores take no requests but ApplyLog, which
// replays the log's entries, key by key, so that a follower's store is the
// leader's as of some log position (m/logpos). A follower that catches up
// to the log's end may lead: it continues the same actor and sequences, so
// no dot is minted twice.
//
// The effects are physical (Badger keys and values), not requests: a
// follower never runs rules, clocks or the Observer; it holds what the
// leader committed, byte for byte, and derives its in-memory state (the
// sequences, watermarks, key filter, digest tree, change-log positions)
// from the keys as they arrive (absorb).

// Role is what a store does in its region.
type Role int32

// Roles.
const (
	// Solo: a region of one node; no region log.
	Solo Role = iota
	// Leading: takes requests; replicates every commit to the region log
	// before it commits.
	Leading
	// Following: takes only ApplyLog (and LoadCopy).
	Following
)

func (r Role) String() string {
	switch r {
	case Leading:
		return "leader"
	case Following:
		return "follower"
	}
	return "solo"
}

// ErrNotLeader is returned, wrapped, for a request a store refuses because
// its node does not lead the region (it follows, or it was deposed: the
// region log refused its append). Nothing of the request was committed or
// is in the log; the client should send it to the leader.
var ErrNotLeader = errors.New("this node does not lead its region")

// ErrLogUnknown is returned, wrapped, when the region log did not confirm a
// commit's append (a timeout, a lost connection): the commit may or may
// not be in the log, and so may or may not become visible once a node that
// has the log's end leads. The store stops leading.
var ErrLogUnknown = errors.New("the region log did not confirm the commit: its outcome is unknown")

// ErrNeedsCopy is returned by ApplyLog to a store that holds nothing of its
// region when the log's first entry shows that the region's first leader
// started it from data it already held (a region of one node that became
// several): replaying the log cannot rebuild that data; the node must load
// a copy of the leader's store (LoadCopy).
var ErrNeedsCopy = errors.New("the region log does not start from an empty store: this node needs a copy of the leader's")

// ErrCopying is returned by reads while the store is being replaced by a
// copy of the leader's (LoadCopy) or holds an incomplete one.
var ErrCopying = errors.New("this node is being seeded with a copy of its region's leader")

// Replicator appends a leading store's commits to the region log.
type Replicator interface {
	// Append appends one entry holding effects after position after (the
	// log's last entry, as far as this store knows) and returns the new
	// entry's position once a majority of the region's nodes hold it. It
	// must fail with an error wrapping ErrNotLeader when the log has moved
	// past after (another node leads), and ErrLogUnknown when it cannot
	// tell whether the entry was taken.
	Append(after uint64, effects []byte) (uint64, error)
}

// LogEntry is one entry of the region log, for ApplyLog.
type LogEntry struct {
	// Seq is the entry's position (its last message's sequence), Term the
	// term of the leader that appended it.
	Seq, Term uint64
	// Effects are the commit's effects as Replicator.Append received
	// them (empty for a term marker).
	Effects []byte
}

var (
	// keyLogPos holds the position and term of the last region-log entry
	// the store holds (16 bytes); absent in a region of one node.
	keyLogPos = []byte("m/logpos")
	// keyCopying is set while a copy of the leader's store is loaded
	// (LoadCopy): a store that holds it was cut off halfway.
	keyCopying = []byte("m/copying")
	// keyBase is set by the region's first leader, in the log's first
	// entry: 1 when its store held data before the log began (a replay of
	// the log from an empty store is then not the region's state), 0 when
	// it was empty.
	keyBase = []byte("m/base")
)

func encodeLogPos(seq, term uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), seq), term)
}

func decodeLogPos(b []byte) (seq, term uint64) {
	return binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
}

// Effect operations.
const (
	fxSet    = 1
	fxDelete = 2
)

// effectsFormat is the first byte of an encoded effects list.
const effectsFormat = 0xE1

// wtxn is the writer's transaction. Every key a commit sets or deletes
// goes through it; while it captures (the store leads its region), each
// change is also appended to fx, in order, as the commit's effects.
type wtxn struct {
	raw     *badger.Txn
	capture bool
	fx      []byte
}

// Set sets key to value.
func (t *wtxn) Set(key, value []byte) error {
	if t.capture {
		if len(t.fx) == 0 {
			t.fx = append(t.fx, effectsFormat)
		}
		t.fx = append(t.fx, fxSet)
		t.fx = appendBytes(t.fx, key)
		t.fx = appendBytes(t.fx, value)
	}
	return t.raw.Set(key, value)
}

// Delete deletes key.
func (t *wtxn) Delete(key []byte) error {
	if t.capture {
		if len(t.fx) == 0 {
			t.fx = append(t.fx, effectsFormat)
		}
		t.fx = append(t.fx, fxDelete)
		t.fx = appendBytes(t.fx, key)
	}
	return t.raw.Delete(key)
}

// NewIterator iterates the transaction's view, its own changes included.
func (t *wtxn) NewIterator(o badger.IteratorOptions) *badger.Iterator { return t.raw.NewIterator(o) }

// effect is one decoded change.
type effect struct {
	op         byte
	key, value []byte
}

// decodeEffects calls fn for every change of an encoded effects list, in
// order. An empty list (a term marker) has none.
func decodeEffects(b []byte, fn func(effect) error) error {
	if len(b) == 0 {
		return nil
	}
	if b[0] != effectsFormat {
		return fmt.Errorf("%w: region log entry of format 0x%02x; this build reads 0x%02x (a newer geogate wrote it: upgrade this node)", ErrMalformed, b[0], effectsFormat)
	}
	rd := reader{b: b[1:]}
	for len(rd.b) > 0 && rd.err == nil {
		op := rd.b[0]
		rd.b = rd.b[1:]
		e := effect{op: op, key: rd.bytes("effect key")}
		switch op {
		case fxSet:
			e.value = rd.bytes("effect value")
		case fxDelete:
		default:
			return fmt.Errorf("%w: region log entry: unknown operation %d", ErrMalformed, op)
		}
		if rd.err != nil {
			break
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if rd.err != nil {
		return fmt.Errorf("%w: region log entry: %v", ErrMalformed, rd.err)
	}
	return nil
}

// Role returns what the store does in its region.
func (s *Store) Role() Role { return Role(s.role.Load()) }

// LogPosition returns the position and term of the last region-log entry
// the store holds (0, 0 for none).
func (s *Store) LogPosition() (seq, term uint64) {
	p := s.logPos.Load()
	if p == nil {
		return 0, 0
	}
	return p[0], p[1]
}

// Copying reports whether the store holds no usable state until a copy of
// the leader's is loaded: a load is under way, or one was cut off.
func (s *Store) Copying() bool { return s.copying.Load() }

// Lead makes a following store its region's leader for term: through the
// writer, it appends a term marker after position after (the region log's
// last message, which the store must have applied up to its last whole
// entry) and, once the log took it, takes requests, handing every commit's
// effects to rep. A store that never held an actor (the region's first
// leader) draws one and the marker carries it. It fails, staying a
// follower, when the log refuses the marker (another node appended
// since: ErrNotLeader) or does not confirm it.
func (s *Store) Lead(ctx context.Context, term, after uint64, rep Replicator) error {
	if s.Role() != Following {
		return fmt.Errorf("lead: the store is %s, not a follower", s.Role())
	}
	if s.copying.Load() {
		return fmt.Errorf("lead: %w", ErrCopying)
	}
	r := requestPool.Get().(*request)
	r.control = &controlRequest{lead: &leadRequest{term: term, after: after, rep: rep}}
	_, err := s.submit(ctx, r)
	return err
}

// Follow makes the store a follower: from the next batch on it refuses
// every request but ApplyLog. It returns once a batch under way, whose
// append may still succeed, has ended, so that LogPosition then names
// every entry the store holds. Idempotent.
func (s *Store) Follow(ctx context.Context) error {
	if s.Role() == Solo {
		return errors.New("follow: a store of a region of one node cannot follow")
	}
	s.role.Store(int32(Following))
	r := requestPool.Get().(*request)
	r.control = &controlRequest{follow: true}
	_, err := s.submit(ctx, r)
	return err
}

// ApplyLog applies region-log entries, in order, to a following store, in
// one transaction per batch the writer takes: each entry's effects, then
// the log position. Entries at or before the store's position are skipped
// (a redelivery). It is durable as a write is (Options.Sync).
func (s *Store) ApplyLog(ctx context.Context, entries []LogEntry) error {
	for len(entries) > 0 {
		n, size := 0, 0
		for n < len(entries) && (n == 0 || size+len(entries[n].Effects) < s.batchBytes/2) {
			size += len(entries[n].Effects)
			n++
		}
		r := requestPool.Get().(*request)
		r.replica = entries[:n]
		if _, err := s.submit(ctx, r); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

// controlRequest changes what the store does; it runs as a batch of its
// own.
type controlRequest struct {
	lead   *leadRequest
	follow bool
	load   *loadRequest
}

type leadRequest struct {
	term, after uint64
	rep         Replicator
}

// doControl runs a control request in the writer.
func (s *Store) doControl(st *batchState, c *controlRequest) error {
	switch {
	case c.lead != nil:
		return s.doLead(st, c.lead)
	case c.follow:
		// A trim the publisher asked for while leading is the next
		// leader's to make: the log decides what a follower holds.
		s.trimWant.Store(s.trimmed)
		s.rep = nil
	}
	return nil
}

// doLead runs a lead request: it stages the term marker (the actor, for a
// region's first leader) for commitBatch to append and commit.
func (s *Store) doLead(st *batchState, lr *leadRequest) error {
	s.rep, s.term = lr.rep, lr.term
	st.append, st.lead = true, true
	s.logSeq = lr.after
	if lr.after == 0 {
		base := byte(0)
		if s.seq > 0 || len(s.wm) > 0 {
			base = 1
		}
		if err := st.txn.Set(keyBase, []byte{base}); err != nil {
			return err
		}
	}
	if s.actor == "" {
		if err := s.drawActor(&st.txn); err != nil {
			return err
		}
	}
	return nil
}

// doReplica applies log entries in the writer's transaction and absorbs
// their effects into the store's in-memory state.
func (s *Store) doReplica(st *batchState, entries []LogEntry) error {
	if s.Role() != Following {
		return fmt.Errorf("apply region log: %w", errors.New("the store leads its region: it appends to the log, it does not apply it"))
	}
	for _, e := range entries {
		if e.Seq <= s.logSeq {
			continue
		}
		err := decodeEffects(e.Effects, func(fx effect) error { return s.absorb(st, fx) })
		if err != nil {
			return fmt.Errorf("apply region log entry %d: %w", e.Seq, err)
		}
		s.logSeq, s.term = e.Seq, e.Term
		st.logged = true
	}
	return nil
}

// absorb applies one effect to the transaction and to the in-memory state
// a leader keeps as it writes the same key (see the key spaces in keys.go).
func (s *Store) absorb(st *batchState, fx effect) error {
	k := fx.key
	if bytes.Equal(k, keyLogPos) || bytes.Equal(k, keyCopying) {
		return nil // a node's own; never shipped
	}
	switch {
	case bytes.Equal(k, keyBase) && fx.op == fxSet && len(fx.value) == 1 && fx.value[0] == 1 && st.actor == "" && st.seq == 0:
		return ErrNeedsCopy
	case bytes.HasPrefix(k, prefixRecord):
		key := string(k[len(prefixRecord):])
		if _, seen := st.tree.before[key]; !seen {
			var old []byte
			item, err := st.txn.raw.Get(k)
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
			case err != nil:
				return fmt.Errorf("read %q: %w", key, err)
			default:
				if old, err = item.ValueCopy(nil); err != nil {
					return fmt.Errorf("read %q: %w", key, err)
				}
			}
			st.tree.before[key] = storedHash(key, old)
		}
		var after []byte
		if fx.op == fxSet {
			s.keys.testOrAdd(key)
			st.tree.replaced = append(st.tree.replaced, key)
			after = fx.value
		}
		st.tree.wrote(s.merkle, key, after)
		// A later entry of the batch may change the key again: its
		// change is from this value.
		st.tree.before[key] = storedHash(key, after)
	case bytes.HasPrefix(k, prefixOutbox) && fx.op == fxSet:
		seq := seqFromKey(prefixOutbox, k)
		s.seq = max(s.seq, seq)
		e, _, err := decodeOutboxHeader(seq, fx.value)
		if err != nil {
			return fmt.Errorf("outbox entry %d: %w", seq, err)
		}
		if e.Origin == s.actor && s.actor != "" {
			s.oseq = max(s.oseq, e.OSeq)
		}
		st.outboxed = true
	case bytes.HasPrefix(k, prefixWatermark) && fx.op == fxSet:
		n, err := decodeU64(fx.value)
		if err != nil {
			return fmt.Errorf("watermark %s: %w", k, err)
		}
		origin := string(k[len(prefixWatermark):])
		if _, ok := st.wmOld[origin]; !ok {
			st.wmOld[origin] = s.wm[origin]
		}
		s.wm[origin] = n
	case bytes.HasPrefix(k, prefixConflict):
		if fx.op == fxSet {
			s.cseq = max(s.cseq, seqFromKey(prefixConflict, k))
		} else {
			st.cfirstMoved = true
		}
		s.chead = nil
	case bytes.HasPrefix(k, prefixObserve):
		s.absorbObservation(k, fx.op == fxSet)
		st.observed = st.observed || fx.op == fxSet
	case bytes.HasPrefix(k, prefixChange):
		if fx.op == fxSet {
			first := seqFromKey(prefixChange, k)
			last := first
			err := decodeChangeGroup(first, fx.value, func(pos uint64, _, _ string, _ uint64) error { last = pos; return nil })
			if err != nil {
				return fmt.Errorf("change log entry %d: %w", first, err)
			}
			s.fseq = max(s.fseq, last)
		} else {
			st.ffirstMoved = true
		}
	case bytes.Equal(k, keySeqs) && fx.op == fxSet:
		seq, oseq, cseq, err := decodeSeqs(fx.value)
		if err != nil {
			return err
		}
		s.seq, s.oseq, s.cseq = max(s.seq, seq), max(s.oseq, oseq), max(s.cseq, cseq)
	case bytes.Equal(k, keyTrimmed) && fx.op == fxSet:
		n, err := decodeU64(fx.value)
		if err != nil {
			return err
		}
		s.trimmed = max(s.trimmed, n)
		s.trimWant.Store(s.trimmed)
	case bytes.Equal(k, keyActor) && fx.op == fxSet:
		actor := string(fx.value)
		if conflict.RegionOf(actor) != s.opts.Region {
			return fmt.Errorf("%w: the region log names actor %q, not one of region %q", ErrMalformed, actor, s.opts.Region)
		}
		s.setActor(actor)
	}
	if fx.op == fxSet {
		return st.txn.raw.Set(k, fx.value)
	}
	return st.txn.raw.Delete(k)
}

// settleReplica finishes a batch of log entries: the oldest conflict-log
// and change-log entries, if the batch pruned some, and the log position.
func (s *Store) settleReplica(st *batchState) error {
	first := func(prefix []byte, fallback uint64) uint64 {
		it := st.txn.raw.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		if it.Rewind(); it.Valid() {
			return seqFromKey(prefix, it.Item().Key())
		}
		return fallback
	}
	if st.cfirstMoved {
		s.cfirst = first(prefixConflict, s.cseq+1)
	}
	if st.ffirstMoved {
		s.ffirst = first(prefixChange, s.fseq+1)
	}
	return st.txn.raw.Set(keyLogPos, encodeLogPos(s.logSeq, s.term))
}

// replicate hands the batch's effects to the region log and records the
// position it got, before the commit.
func (s *Store) replicate(st *batchState) error {
	pos, err := s.rep.Append(s.logSeq, st.txn.fx)
	if err != nil {
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrLogUnknown) {
			err = fmt.Errorf("%w: %w", ErrLogUnknown, err)
		}
		return err
	}
	s.logSeq = pos
	st.logged = true
	return st.txn.raw.Set(keyLogPos, encodeLogPos(pos, s.term))
}

// drawActor draws a fresh actor epoch for the region and stages it.
func (s *Store) drawActor(txn *wtxn) error {
	actor, err := newActor(s.opts.Region)
	if err != nil {
		return err
	}
	if err := txn.Set(keyActor, []byte(actor)); err != nil {
		return err
	}
	s.setActor(actor)
	s.log.Info("drew the region's actor epoch", "actor", s.actor)
	return nil
}
