package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/geogate/geogate/conflict"
)

// Mutation is a local write or delete of one key.
type Mutation struct {
	Key string
	// Value is the JSON document (ParseDoc); required unless Deleted,
	// ignored when Deleted.
	Value   Doc
	Deleted bool
	// Context is the causal context the client wrote with (nil: none).
	Context conflict.VV
	// Supersede joins the record's current context into Context, so the
	// write supersedes every version this region has seen for the key (the
	// last-write-wins rule for a write without a context).
	Supersede bool
	// Merged marks the write of a resolver's merged value (it reaches the
	// Observer as Change.Merged).
	Merged bool
}

// WriteResult is what a durable local write produced.
type WriteResult struct {
	// Record is the key's record after the write.
	Record conflict.Record
	// Event is the replicated form of the write, OSeq assigned.
	Event   conflict.Event
	Outcome conflict.Outcome
}

// Incoming is one replicated event to apply. Its value must be valid JSON:
// DecodeEvent, which decodes events from the wire, checks it.
type Incoming struct {
	Event conflict.Event
	// Raw is the event's encoded form (AppendEvent) as received; when
	// Forward is set it is appended to the outbox unchanged.
	Raw []byte
	// Path lists the regions the event has visited.
	Path []string
	// Forward makes this region append the event to its own outbox (star
	// hub, circle member) in the same transaction as the apply.
	Forward bool
}

// ApplyResult reports what happened to one Incoming.
type ApplyResult struct {
	// Done is false when the event must wait for an earlier event of its
	// origin (a gap); it was not applied and should be redelivered.
	Done bool
	// Duplicate is true when the origin's watermark already covered it.
	Duplicate bool
	// Changed is true when the record was updated.
	Changed bool
	Outcome conflict.Outcome
}

// request is one queued Write (local set) or Apply. Requests come from
// requestPool and go back to it when submit returns.
type request struct {
	local bool
	mut   Mutation
	apply []Incoming
	// lifecycle is a merge, a collection or a watermark raise (merge.go).
	lifecycle *lifecycleRequest
	// replica holds region-log entries to apply (a follower, replica.go).
	replica []LogEntry
	// control changes the store's role (replica.go); it is a batch of its
	// own.
	control *controlRequest
	// observed appends the conflict-log entries of pending observations
	// (observe.go).
	observed *observedRequest
	// resp carries the answer, or the writer role (response.lead); it has
	// room for one message, and a request has at most one in flight.
	resp chan response
}

var requestPool = sync.Pool{New: func() any { return &request{resp: make(chan response, 1)} }}

// size estimates the bytes a request adds to a transaction.
func (r *request) size() int {
	if r.lifecycle != nil {
		return r.lifecycle.size()
	}
	if r.replica != nil {
		n := 0
		for _, e := range r.replica {
			n += len(e.Effects) + 64
		}
		return n
	}
	if r.local {
		return 2*min(r.mut.Value.Len(), valueThreshold) + 2*len(r.mut.Key) + 256
	}
	if r.observed != nil {
		n := 32 * int(r.observed.through-r.observed.from+1)
		for _, e := range r.observed.entries {
			n += e.size()
		}
		return n
	}
	n := 0
	for _, in := range r.apply {
		n += in.size()
	}
	return n
}

// size estimates the bytes applying the event adds to a transaction.
func (in Incoming) size() int {
	return 2*min(len(in.Raw), valueThreshold) + 2*len(in.Event.Key) + 256
}

type response struct {
	write     WriteResult
	applied   []ApplyResult
	lifecycle lifecycleResult
	err       error
	// lead passes the writer role to the request's goroutine instead of
	// answering it.
	lead bool
}

// ErrBadContext is returned, wrapped, for a write whose context no region
// could have handed out: the empty actor, or a counter beyond
// conflict.MaxCounter.
var ErrBadContext = errors.New("impossible causal context")

// ErrTooLarge is returned, wrapped, for a write whose replicated event
// would exceed Options.MaxEventBytes.
var ErrTooLarge = errors.New("event too large to replicate")

// ErrContextAhead is returned, wrapped in a *ContextAheadError, for a write
// whose context names versions this region has not applied yet.
var ErrContextAhead = errors.New("context names versions this region has not applied")

// ContextAheadError lists, for a refused write, the actors whose counters
// the context names beyond this region's applied positions.
type ContextAheadError struct {
	// Missing maps each such actor to the counter the context names.
	Missing conflict.VV
}

func (e *ContextAheadError) Error() string {
	return fmt.Sprintf("%v: %s", ErrContextAhead, e.Missing)
}

// Unwrap makes errors.Is(err, ErrContextAhead) hold.
func (e *ContextAheadError) Unwrap() error { return ErrContextAhead }

// Write makes a local write durable and returns its result. It is
// acknowledged (returns nil error) only after the record and its outbox
// entry are committed, and synced when Options.Sync is set. A write is not
// idempotent: each call makes a new version, whose dot is the write's
// position in this region's log.
//
// It is refused, with nothing written, when its context names a counter
// beyond what this region has applied of that actor (a *ContextAheadError:
// wait with WaitApplied and retry), when the context is impossible
// (ErrBadContext), or when the storage refuses writes
// (ErrInsufficientStorage, ErrStorageFailed).
func (s *Store) Write(ctx context.Context, m Mutation) (WriteResult, error) {
	// Checked here, not by the writer every other write waits on.
	if err := m.Context.Check(); err != nil {
		// Actors are never empty (the encodings cannot hold one), and no
		// counter reaches MaxCounter.
		return WriteResult{}, fmt.Errorf("write %q: %w: %v", m.Key, ErrBadContext, err)
	}
	if m.Deleted {
		m.Value = Doc{}
	} else if m.Value.IsZero() {
		return WriteResult{}, fmt.Errorf("write %q: no document (a write needs a Value unless it is a delete)", m.Key)
	}
	r := requestPool.Get().(*request)
	r.local, r.mut = true, m
	resp, err := s.submit(ctx, r)
	return resp.write, err
}

// Apply applies a batch of replicated events in order, durably, and reports
// per event whether it is done. Per origin actor, events apply strictly in
// OSeq order: an OSeq at or below the watermark is a duplicate (done, no
// effect), the next one applies, a later one waits (not done). Apply is
// idempotent: redelivering a batch changes nothing.
func (s *Store) Apply(ctx context.Context, batch []Incoming) ([]ApplyResult, error) {
	batch, err := s.checkIncoming(batch)
	if err != nil {
		return nil, err
	}
	out := make([]ApplyResult, 0, len(batch))
	for len(batch) > 0 {
		// Split large batches so no transaction outgrows Badger's limit;
		// chunks commit in order, so per-origin order is kept.
		n, size := 0, 0
		for n < len(batch) && (n == 0 || size < s.batchBytes/2) {
			size += batch[n].size()
			n++
		}
		req := requestPool.Get().(*request)
		req.apply = batch[:n]
		r, err := s.submit(ctx, req)
		if err != nil {
			return out, err
		}
		out = append(out, r.applied...)
		batch = batch[n:]
	}
	return out, nil
}

// submit queues r and waits for its answer, then puts r back in
// requestPool (the caller must not use it after). Mutations are serialised by a
// writer role rather than a dedicated goroutine: a caller that finds no
// writer at work takes the role, commits what is queued (its own request
// included) and passes the role on to the oldest request still queued, if
// any. A lone writer thus commits on its own goroutine, with no hand-off;
// under load, requests queue while a commit (and its fsync) runs and the
// next writer takes them all in one batch (group commit).
func (s *Store) submit(ctx context.Context, r *request) (response, error) {
	defer func() {
		r.local, r.mut, r.apply, r.lifecycle, r.replica, r.control, r.observed = false, Mutation{}, nil, nil, nil, nil, nil
		requestPool.Put(r)
	}()
	if s.closing.Load() {
		return response{}, ErrClosed
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return response{}, ctx.Err()
	case <-s.stop:
		return response{}, ErrClosed
	}
	s.qmu.Lock()
	if s.closed {
		s.qmu.Unlock()
		<-s.slots
		return response{}, ErrClosed
	}
	s.queue = append(s.queue, r)
	lead := !s.writing
	s.writing = true
	s.qmu.Unlock()
	if lead {
		s.writeBatch()
	}
	// Once queued, the request is committed or failed by a writer; wait
	// for the answer even if ctx ends, so the caller never mistakes a
	// durable write for a lost one (and so a role passed to r is taken).
	for {
		resp := <-r.resp
		if resp.lead {
			s.writeBatch()
			continue
		}
		return resp, resp.err
	}
}

// writeBatch is one turn of the writer role: it takes what is queued (up to
// Options.MaxBatch requests and batchBytes), runs it in one transaction,
// commits (and syncs) once, answers every request of the batch, then passes
// the role on: to the oldest queued request, to a goroutine of its own when
// only an outbox trim is pending, or to nobody.
func (s *Store) writeBatch() {
	s.qmu.Lock()
	n, size := 0, 0
	for n < len(s.queue) && n < s.opts.MaxBatch && (n == 0 || size < s.batchBytes) {
		if s.queue[n].control != nil && n > 0 {
			break // a control request is a batch of its own
		}
		size += s.queue[n].size()
		n++
		if s.queue[n-1].control != nil {
			break
		}
	}
	// The batch slice is the writer's, reused from turn to turn: it is not
	// used once the role is passed on.
	s.batchReqs = append(s.batchReqs[:0], s.queue[:n]...)
	batch := s.batchReqs
	clear(s.queue[:n])
	s.queue = s.queue[n:]
	s.qmu.Unlock()

	var ok bool
	if len(batch) == 1 && batch[0].control != nil && batch[0].control.load != nil {
		c := batch[0].control
		err := s.loadCopy(c.load)
		if err != nil {
			s.log.Error("loading a copy of the leader's store failed; the node loads one again before it serves", "err", err)
		}
		ok = err == nil
		batch[0].resp <- response{err: err}
	} else {
		ok = s.commitBatch(batch)
	}
	for range batch {
		<-s.slots
	}
	// A trim bounded per commit may have more to do; after a failed commit
	// the next request or TrimOutbox retries it.
	moreTrim := ok && s.trimmed < min(s.trimWant.Load(), s.seq)

	s.qmu.Lock()
	switch {
	case len(s.queue) > 0:
		next := s.queue[0]
		s.qmu.Unlock()
		next.resp <- response{lead: true}
	default:
		if moreTrim {
			s.armTrimLocked() // the rest rides on a later commit
		}
		s.writing = false
		if s.closed {
			close(s.idle)
		}
		s.qmu.Unlock()
	}
}

// batchState is the writer's view inside one transaction.
type batchState struct {
	txn     wtxn
	records map[string]conflict.Record
	dirty   map[string]bool
	// wmOld holds, for each origin whose watermark the batch moved, the
	// watermark before the batch (to roll back if the commit fails).
	wmOld map[string]uint64
	// resps holds the batch's answers until they are sent.
	resps []response
	// conflicts are the conflict-log entries the batch appended.
	conflicts []ConflictEntry
	// seq, oseq, cseq and trimmed as they were before the batch.
	seq, oseq, cseq, trimmed, cfirst uint64
	outboxed                         bool
	// nseq and nfirst as they were before the batch, and whether it
	// stored pending observations (observe.go).
	nseq, nfirst uint64
	observed     bool

	// fseq and ffirst as they were before the batch, and the batch's
	// change-log entry (changes.go).
	fseq, ffirst uint64
	feed         []byte
	// tree holds what the digest tree needs of the batch (merkle.go).
	tree treeBatch

	// A region of several nodes (replica.go): the actor and log position
	// as they were before the batch; whether the batch must append to the
	// region log even without effects (a term marker), makes the store
	// lead, or moved its log position; and whether a follower's batch
	// pruned the conflict or change log.
	actor                    string
	logSeq, term             uint64
	append, lead, logged     bool
	cfirstMoved, ffirstMoved bool
}

// refusedError is a request the writer refused before changing anything
// (a context ahead of this region, a log at its limit): only that request
// fails, the rest of its batch commits.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }

// commitBatch runs the batch in one transaction and answers every request;
// it reports whether the commit succeeded. Under low free space it still
// commits a pending outbox trim but refuses writes and applies; once the
// storage failed it touches the disk no more.
func (s *Store) commitBatch(batch []*request) bool {
	health := s.health.recheck(time.Now())
	refusal := health.refusal()
	if health.State == StorageFailed {
		for _, r := range batch {
			r.resp <- response{err: refusal}
		}
		return false
	}
	var stats Stats
	// The batch state's maps are the writer's, reused from batch to batch.
	st := &s.batch
	if st.records == nil {
		st.records, st.dirty, st.wmOld = map[string]conflict.Record{}, map[string]bool{}, map[string]uint64{}
	}
	clear(st.records)
	clear(st.dirty)
	clear(st.wmOld)
	st.tree.reset(s.merkle)
	st.conflicts, st.outboxed, st.observed = nil, false, false
	role := s.Role()
	lead := len(batch) == 1 && batch[0].control != nil && batch[0].control.lead != nil
	st.txn = wtxn{raw: s.beginCommit(), capture: role == Leading || lead, fx: st.txn.fx[:0]}
	st.seq, st.oseq, st.cseq, st.trimmed, st.cfirst = s.seq, s.oseq, s.cseq, s.trimmed, s.cfirst
	st.fseq, st.ffirst, st.feed = s.fseq, s.ffirst, nil
	st.nseq, st.nfirst = s.nseq, s.nfirst
	st.actor, st.logSeq, st.term = s.actor, s.logSeq, s.term
	st.append, st.lead, st.logged, st.cfirstMoved, st.ffirstMoved = false, false, false, false, false
	defer st.txn.raw.Discard()
	resps := slices.Grow(st.resps[:0], len(batch))[:len(batch)]
	clear(resps)
	st.resps = resps
	var err error
	for i, r := range batch {
		switch {
		case r.control != nil:
			resps[i].err = s.doControl(st, r.control)
		case refusal != nil:
			resps[i].err = refusal
			continue
		case r.replica != nil:
			resps[i].err = s.doReplica(st, r.replica)
		case role == Following:
			resps[i].err = fmt.Errorf("%w: it follows; send writes to the leader", ErrNotLeader)
			continue
		case r.local:
			resps[i].write, resps[i].err = s.doWrite(st, &r.mut, &stats)
		case r.observed != nil:
			resps[i].err = s.doObserved(st, r.observed, &stats)
		case r.lifecycle != nil:
			resps[i].lifecycle, resps[i].err = s.doLifecycle(st, r.lifecycle, &stats)
		default:
			resps[i].applied, resps[i].err = s.doApply(st, r.apply, &stats)
		}
		if resps[i].err != nil {
			if re, ok := resps[i].err.(*refusedError); ok {
				resps[i].err = re.err
				continue
			}
			err = resps[i].err
			break
		}
	}
	if err == nil {
		err = s.flush(st)
	}
	if err == nil && role != Following {
		// A follower's outbox is trimmed by the leader's effects only.
		err = s.trimOutbox(st)
	}
	if err == nil {
		err = s.commitFeed(st)
	}
	if err == nil && st.logged {
		err = s.settleReplica(st)
	}
	if err == nil && st.txn.capture && (len(st.txn.fx) > 0 || st.append) {
		err = s.replicate(st)
	}
	if err == nil {
		err = s.commit(st.txn.raw)
		stats.Commits++
	}
	if err != nil {
		s.seq, s.oseq, s.cseq, s.trimmed, s.cfirst = st.seq, st.oseq, st.cseq, st.trimmed, st.cfirst
		s.fseq, s.ffirst = st.fseq, st.ffirst
		s.nseq, s.nfirst = st.nseq, st.nfirst
		s.setActor(st.actor)
		s.logSeq, s.term = st.logSeq, st.term
		s.merkle.pending = s.merkle.pending[:0]
		replicated := errors.Is(err, ErrNotLeader) || errors.Is(err, ErrLogUnknown)
		if st.lead || replicated && role == Leading {
			// The log refused or lost track of the commit: stop taking
			// writes at once; the node follows the log again to learn
			// what it holds.
			s.role.Store(int32(Following))
			s.rep = nil
		}
		s.chead = nil // it may describe an entry of the failed transaction
		for origin, old := range st.wmOld {
			if old == 0 {
				delete(s.wm, origin)
			} else {
				s.wm[origin] = old
			}
		}
		s.log.Error("commit failed", "err", err, "requests", len(batch))
		// A region-log entry this store cannot take (it needs a copy of
		// the leader's, or the entry does not decode) says nothing about
		// the disk.
		refusedEntry := role == Following && (errors.Is(err, ErrNeedsCopy) || errors.Is(err, ErrMalformed))
		if commitFailed(err) && !replicated && !refusedEntry {
			s.health.fail(fmt.Sprintf("a commit failed: %v", err), time.Now())
			s.log.Error("storage failed: refusing reads, writes and applies until restart", "err", err)
		}
		answer := fmt.Errorf("commit: %w", err)
		if st.logged && !replicated && role == Leading {
			// The region log took the batch, so the region's next
			// leader applies it: to the client its outcome is unknown.
			answer = fmt.Errorf("commit: %w: the region log holds the batch, which the region's next leader applies, but this node could not commit it: %w", ErrLogUnknown, err)
		}
		for _, r := range batch {
			r.resp <- response{err: answer}
		}
		return false
	}
	if st.lead {
		s.role.Store(int32(Leading))
	}
	if st.logged {
		s.logPos.Store(&[2]uint64{s.logSeq, s.term})
	}
	s.outboxHead.Store(s.seq)
	s.feedOldest.Store(s.ffirst)
	s.feedHead.Store(s.fseq) // before exposeApplied, which wakes FeedWait
	s.mu.Lock()
	s.stats.Writes += stats.Writes
	s.stats.Applied += stats.Applied
	s.stats.Duplicates += stats.Duplicates
	s.stats.Gaps += stats.Gaps
	s.stats.Forwarded += stats.Forwarded
	s.stats.Conflicts += stats.Conflicts
	s.stats.Commits += stats.Commits
	s.pendingHead, s.observedThrough = s.nseq, s.nfirst-1
	s.mu.Unlock()
	s.exposeApplied(st.wmOld)
	st.tree.afterCommit(s)
	for i, r := range batch {
		r.resp <- resps[i]
	}
	if st.outboxed && s.opts.OnOutbox != nil {
		s.opts.OnOutbox()
	}
	if st.observed || st.lead {
		s.signalObserver()
	}
	if s.opts.OnConflicts != nil && len(st.conflicts) > 0 {
		s.opts.OnConflicts(st.conflicts)
	}
	return true
}

// checkIncoming refuses events no correct region writes
// (conflict.Event.Validate: impossible counters, an empty actor) and puts
// values in the form the store keeps (normalizeValue): the origin
// normalized them, so this is a scan; anything else is rewritten so the
// value has the same bytes in every region. Their validity was checked
// where they entered (DecodeEvent). The caller's slice is not modified.
func (s *Store) checkIncoming(batch []Incoming) ([]Incoming, error) {
	copied := false
	for i, in := range batch {
		ev := in.Event
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("apply %s:%d to %q: %w: %v", ev.Origin(), ev.OSeq, ev.Key, ErrMalformed, err)
		}
		if isCompactHTMLSafe(ev.Version.Value) {
			continue
		}
		value, err := normalizeValue(ev.Version.Value)
		if err != nil {
			return nil, fmt.Errorf("apply %s:%d to %q: value: %w", ev.Origin(), ev.OSeq, ev.Key, err)
		}
		if !copied {
			batch, copied = slices.Clone(batch), true
		}
		batch[i].Event.Version.Value = value
	}
	return batch, nil
}

func (s *Store) record(st *batchState, key string) (conflict.Record, error) {
	if rec, ok := st.records[key]; ok {
		return rec, nil
	}
	// A new key needs no lookup. It is added to the filter now, as the
	// batch is about to write its record: if the commit fails, the filter
	// only has a key too many (a false positive), never one too few.
	if !s.keys.testOrAdd(key) {
		st.records[key] = conflict.Record{}
		return conflict.Record{}, nil
	}
	rec, err := st.tree.read(st.txn.raw, key)
	if errors.Is(err, ErrChecksum) {
		// Corrupt on disk: it counts as no record for an apply or a
		// repair, which replace it; a local write refuses (doWrite).
		st.records[key] = conflict.Record{}
		return conflict.Record{}, err
	}
	if err != nil {
		return rec, err
	}
	st.records[key] = rec
	return rec, nil
}

func (s *Store) doWrite(st *batchState, m *Mutation, stats *Stats) (WriteResult, error) {
	// Refusals first, before anything changes.
	if s.oseq >= conflict.MaxCounter {
		return WriteResult{}, &refusedError{fmt.Errorf("write %q: actor %s has written %d versions, the most a log holds; restart the region from an empty store to take a new actor", m.Key, s.actor, s.oseq)}
	}
	if err := s.checkContext(m.Context); err != nil {
		return WriteResult{}, &refusedError{fmt.Errorf("write %q: %w", m.Key, err)}
	}
	before, err := s.record(st, m.Key)
	if errors.Is(err, ErrChecksum) || st.tree.isCorrupt(m.Key) {
		return WriteResult{}, &refusedError{fmt.Errorf("write %q: %w: the stored record is corrupt and is being repaired from a peer; retry", m.Key, ErrChecksum)}
	}
	if err != nil {
		return WriteResult{}, err
	}
	ctx := m.Context
	if m.Supersede {
		ctx = before.Context()
		if len(m.Context) > 0 {
			ctx = ctx.Merge(m.Context)
		}
	}
	value := m.Value.JSON()
	// The dot is the write's position in this actor's log: unique for the
	// actor across keys, and beyond every counter of the actor that a
	// context this region accepted can name (checkContext).
	dot := conflict.Dot{Actor: s.actor, Counter: s.oseq + 1}
	after, ev, out, err := before.Write(dot, ctx, value, m.Deleted, s.opts.Clock.Now())
	if err != nil {
		// The record names a counter of this actor beyond its log: it was
		// written under an older scheme or is corrupt. Refuse rather than
		// write a version born superseded.
		return WriteResult{}, &refusedError{fmt.Errorf("write %q: %w", m.Key, err)}
	}
	ev.Key = m.Key
	ev.OSeq = dot.Counter
	// The outbox value is the entry header followed by the event: encode
	// the event straight after the header.
	header := appendOutboxHeader(make([]byte, 0, 192+len(m.Key)+len(value)), OutboxEntry{Origin: s.actor, OSeq: ev.OSeq, Path: s.selfPath})
	entry := AppendEvent(header, ev)
	if max := s.opts.MaxEventBytes; max > 0 && len(entry)-len(header) > max {
		return WriteResult{}, &refusedError{fmt.Errorf("write %q: %w: its event is %d bytes, over the %d the replication stream takes (a %d-byte document with a context of %d actors)",
			m.Key, ErrTooLarge, len(entry)-len(header), max, len(value), len(ctx))}
	}
	s.oseq++
	if err := s.appendOutbox(st, entry); err != nil {
		return WriteResult{}, err
	}
	s.logChange(st, m.Key, s.actor, ev.OSeq)
	st.records[m.Key], st.dirty[m.Key] = after, true
	stats.Writes++
	if err := s.observe(st, Change{Key: m.Key, Before: before, After: after, Event: ev, Local: true, Merged: m.Merged, Outcome: out}); err != nil {
		return WriteResult{}, err
	}
	return WriteResult{Record: after, Event: ev, Outcome: out}, nil
}

// checkContext refuses a write context that names, for some actor, a
// counter beyond what this region has applied of that actor's log (its
// own log for its own actor). Every counter a correct region hands out is a
// position in its actor's log, so such a context is forged, corrupt, or
// read at a region whose writes have not reached this one yet; accepting it
// would supersede versions this region has not seen and could cover the
// dots of writes still to come. The caller may wait for the missing
// positions (Store.WaitApplied) and retry.
func (s *Store) checkContext(ctx conflict.VV) error {
	var missing conflict.VV
	for actor, c := range ctx {
		have := s.wm[actor]
		if actor == s.actor {
			have = s.oseq
		}
		if c > have {
			if missing == nil {
				missing = conflict.VV{}
			}
			missing[actor] = c
		}
	}
	if missing != nil {
		return &ContextAheadError{Missing: missing}
	}
	return nil
}

func (s *Store) doApply(st *batchState, batch []Incoming, stats *Stats) ([]ApplyResult, error) {
	res := make([]ApplyResult, len(batch))
	for i, in := range batch {
		ev := in.Event
		origin := ev.Origin()
		if origin == s.actor || ev.OSeq == 0 {
			// Our own event came back, or an event without a log
			// position: never applied (loop prevention, layer 3).
			res[i] = ApplyResult{Done: true, Duplicate: true}
			stats.Duplicates++
			continue
		}
		wm := s.wm[origin]
		switch {
		case ev.OSeq <= wm:
			res[i] = ApplyResult{Done: true, Duplicate: true}
			stats.Duplicates++
			continue
		case ev.OSeq > wm+1:
			stats.Gaps++
			continue // not done: wait for the gap to fill
		}
		before, err := s.record(st, ev.Key)
		if err != nil && !errors.Is(err, ErrChecksum) {
			return nil, err
		}
		after, out := before.Apply(ev)
		skewed := !s.opts.Clock.Observe(ev.Version.HLC)
		if _, ok := st.wmOld[origin]; !ok {
			st.wmOld[origin] = wm
		}
		s.wm[origin] = ev.OSeq
		changed := !after.Equal(before)
		if changed {
			st.records[ev.Key], st.dirty[ev.Key] = after, true
			s.logChange(st, ev.Key, origin, ev.OSeq)
		}
		if in.Forward {
			raw := in.Raw
			if raw == nil {
				raw = AppendEvent(nil, ev)
			}
			path := append(slices.Clip(in.Path), s.opts.Region)
			if err := s.appendOutbox(st, encodeOutbox(OutboxEntry{Origin: origin, OSeq: ev.OSeq, Path: path, Data: raw})); err != nil {
				return nil, err
			}
			stats.Forwarded++
		}
		res[i] = ApplyResult{Done: true, Changed: changed, Outcome: out}
		stats.Applied++
		if out.Added || skewed {
			if err := s.observe(st, Change{Key: ev.Key, Before: before, After: after, Event: ev, Skewed: skewed, Outcome: out}); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// appendOutbox adds an encoded entry (encodeOutbox) at the next outbox seq.
func (s *Store) appendOutbox(st *batchState, value []byte) error {
	s.seq++
	if err := st.txn.Set(seqKey(prefixOutbox, s.seq), value); err != nil {
		return fmt.Errorf("outbox %d: %w", s.seq, err)
	}
	st.outboxed = true
	return nil
}

// flush writes the batch's records, watermarks and counters.
func (s *Store) flush(st *batchState) error {
	for key := range st.dirty {
		rk := recordKey(key)
		rec := st.records[key]
		if len(rec.Versions) == 0 { // collected (tombstones.go): the record goes
			if err := st.txn.Delete(rk); err != nil {
				return fmt.Errorf("delete %q: %w", key, err)
			}
			st.tree.wrote(s.merkle, key, nil)
			continue
		}
		b := AppendRecord(make([]byte, 0, 256), rec)
		if err := st.txn.Set(rk, b); err != nil {
			return fmt.Errorf("put %q: %w", key, err)
		}
		st.tree.wrote(s.merkle, key, b)
	}
	for origin := range st.wmOld {
		if err := st.txn.Set(watermarkKey(origin), encodeU64(s.wm[origin])); err != nil {
			return fmt.Errorf("watermark %s: %w", origin, err)
		}
	}
	// The sequences are not written here: Open derives them from the
	// newest outbox and conflict-log entries, which this transaction
	// writes. Only a trim, which may delete the newest outbox entry,
	// records them (trimOutbox).
	return nil
}
