package store

import (
	"github.com/dgraph-io/badger/v4"
	"time"

	"encoding/binary"
	"errors"
	"fmt"
)

// OutboxEntry is one entry of the region's replication log: an event this
// region wrote (Path = [region]) or forwards for another region (Path lists
// the regions it has visited, this one last). Data is the conflict.Event
// as AppendEvent encodes it, published unchanged (DecodeEvent reads it).
type OutboxEntry struct {
	// Seq is the entry's position in this region's log: from 1, gapless,
	// assigned in commit order.
	Seq uint64
	// Origin is the actor that wrote the event; OSeq its position in that
	// actor's own log.
	Origin string
	OSeq   uint64
	Path   []string
	Data   []byte
}

var errCorruptOutbox = errors.New("corrupt outbox entry")

func encodeOutbox(e OutboxEntry) []byte {
	return append(appendOutboxHeader(make([]byte, 0, len(e.Data)+len(e.Origin)+32), e), e.Data...)
}

// appendOutboxHeader appends everything of the entry's stored form but its
// Data, which follows to the end of the value.
func appendOutboxHeader(b []byte, e OutboxEntry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Origin)))
	b = append(b, e.Origin...)
	b = binary.AppendUvarint(b, e.OSeq)
	b = binary.AppendUvarint(b, uint64(len(e.Path)))
	for _, p := range e.Path {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// decodeOutboxHeader decodes an entry's header (origin, oseq, path) and
// returns the bytes after it, the event, without copying them.
func decodeOutboxHeader(seq uint64, b []byte) (OutboxEntry, []byte, error) {
	e := OutboxEntry{Seq: seq}
	str := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", fmt.Errorf("outbox %d: %w", seq, errCorruptOutbox)
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, nil
	}
	var err error
	if e.Origin, err = str(); err != nil {
		return e, nil, err
	}
	oseq, k := binary.Uvarint(b)
	if k <= 0 {
		return e, nil, fmt.Errorf("outbox %d: %w", seq, errCorruptOutbox)
	}
	e.OSeq, b = oseq, b[k:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 64 {
		return e, nil, fmt.Errorf("outbox %d: %w", seq, errCorruptOutbox)
	}
	b = b[k:]
	for range n {
		p, err := str()
		if err != nil {
			return e, nil, err
		}
		e.Path = append(e.Path, p)
	}
	return e, b, nil
}

func decodeOutbox(seq uint64, b []byte) (OutboxEntry, error) {
	e, data, err := decodeOutboxHeader(seq, b)
	if err != nil {
		return e, err
	}
	e.Data = append([]byte(nil), data...)
	return e, nil
}

// itemOutbox decodes the outbox entry stored in item.
func itemOutbox(item *badger.Item, seq uint64) (e OutboxEntry, err error) {
	err = item.Value(func(v []byte) error {
		e, err = decodeOutbox(seq, v)
		return err
	})
	return e, err
}

// ReadOutbox returns up to max committed outbox entries with Seq > after,
// in Seq order. Entries stay until TrimOutbox removes them.
func (s *Store) ReadOutbox(after uint64, max int) ([]OutboxEntry, error) {
	last := s.outboxHead.Load()
	var out []OutboxEntry
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixOutbox, PrefetchValues: true, PrefetchSize: 128})
		defer it.Close()
		for it.Seek(seqKey(prefixOutbox, after+1)); it.Valid() && len(out) < max; it.Next() {
			seq := seqFromKey(prefixOutbox, it.Item().Key())
			if seq > last {
				break
			}
			e, err := itemOutbox(it.Item(), seq)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox after %d: %w", after, err)
	}
	return out, nil
}

// TrimOutbox marks entries up to upTo as stored downstream; they are deleted
// with the writer's next commit (or a commit of their own when the writer is
// idle; TrimOutbox does not wait for it). Idempotent; a lower upTo than before is ignored, and so is the
// part of upTo beyond the last committed entry (entries not yet written
// cannot have been stored downstream). A trim lost in a crash only means
// those entries are published again, which consumers recognise as
// duplicates.
func (s *Store) TrimOutbox(upTo uint64) error {
	upTo = min(upTo, s.outboxHead.Load())
	for {
		cur := s.trimWant.Load()
		if upTo <= cur || s.trimWant.CompareAndSwap(cur, upTo) {
			break
		}
	}
	s.qmu.Lock()
	s.armTrimLocked()
	s.qmu.Unlock()
	return nil
}

// trimDelay is how long a trim waits for a commit to ride on before it
// gets a commit of its own: under load trims cost no extra fsync.
const trimDelay = 100 * time.Millisecond

// armTrimLocked schedules a trim-only commit after trimDelay, unless one is
// scheduled already. Callers hold s.qmu.
func (s *Store) armTrimLocked() {
	if s.closed || s.trimArmed {
		return
	}
	s.trimArmed = true
	time.AfterFunc(trimDelay, s.trimIdle)
}

// trimIdle runs the delayed trim: it takes the writer role if nobody holds
// it. A writer at work trims with its commits and, if a trim is left when
// its turn ends, arms the delay again (writeBatch).
func (s *Store) trimIdle() {
	s.qmu.Lock()
	s.trimArmed = false
	if s.closed || s.writing || s.trimmed >= min(s.trimWant.Load(), s.outboxHead.Load()) {
		s.qmu.Unlock()
		return
	}
	s.writing = true
	s.qmu.Unlock()
	s.writeBatch()
}

// trimOutbox deletes entries in (trimmed, trimWant] inside the batch, a
// bounded number per commit.
func (s *Store) trimOutbox(st *batchState) error {
	want := min(s.trimWant.Load(), s.seq)
	const maxPerCommit = 2048
	n := 0
	for s.trimmed < want && n < maxPerCommit {
		s.trimmed++
		n++
		if err := st.txn.Delete(seqKey(prefixOutbox, s.trimmed)); err != nil {
			return fmt.Errorf("trim outbox %d: %w", s.trimmed, err)
		}
	}
	if n > 0 {
		if err := st.txn.Set(keyTrimmed, encodeU64(s.trimmed)); err != nil {
			return err
		}
		// The trim may delete the entries Open derives the sequences from.
		if err := st.txn.Set(keySeqs, encodeSeqs(s.seq, s.oseq, s.cseq)); err != nil {
			return fmt.Errorf("sequences: %w", err)
		}
		// More left to trim: writeBatch gives the writer another turn.
	}
	return nil
}

// OutboxLen returns how many committed entries wait to be trimmed.
func (s *Store) OutboxLen() uint64 {
	c, t := s.outboxHead.Load(), s.trimWant.Load()
	if t >= c {
		return 0
	}
	return c - t
}
