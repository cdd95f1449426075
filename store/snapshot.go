package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
)

// Snapshots. A snapshot is every record of a region at one Badger read
// timestamp, with the positions that state reflects: for every origin
// actor the highest log position applied (the watermarks at that
// timestamp, and the region's own log position). Because merging a record
// is the same join as applying its events (conflict.Record.Merge), a
// region may merge a snapshot into whatever it holds and then raise its
// watermarks to the snapshot's positions: events the snapshot reflects are
// then duplicates, and later ones apply on top. The same stream seeds a
// region that lost its history, backs one up (geogate backup) and restores
// it (Restore).
//
// The stream is written as it is read from Badger, never built in memory:
//
//	"GEOSNAP" 0x01                    magic and format version
//	block*                            type(1) length(uvarint) payload crc(4)
//
// where crc is the CRC-32C (little-endian) of type, length and payload, and
// the blocks are one header ('H', JSON SnapshotHeader), record blocks ('R':
// repeated key-length(uvarint) key record-length(uvarint) record, the
// record as the store keeps it, with its own checksum) and one trailer
// ('E', JSON: the record count and the SHA-256 of every record block's
// payload in order), after which the stream ends. A reader therefore
// detects a flipped bit in any block, a block lost or repeated, and a
// stream cut anywhere.

// SnapshotFormat is the snapshot format version this build writes and
// reads.
const SnapshotFormat = 1

var snapshotMagic = []byte("GEOSNAP\x01")

// Block types.
const (
	blockHeader  = 'H'
	blockRecords = 'R'
	blockEnd     = 'E'
)

// snapshotBlockBytes is the size a record block is cut at (a block holds
// whole records, so a large record makes a larger block).
const snapshotBlockBytes = 256 << 10

// maxSnapshotBlock bounds a block a reader accepts (a record is at most a
// few copies of the largest document).
const maxSnapshotBlock = 1 << 30

// ErrSnapshot is returned, wrapped, for a stream that is not a complete,
// intact snapshot: a bad magic, a checksum that does not match, a block
// out of place, a stream cut short.
var ErrSnapshot = errors.New("not a complete, intact snapshot")

// SnapshotHeader describes a snapshot.
type SnapshotHeader struct {
	Format int `json:"format"`
	// Region and Actor are the region the snapshot was taken of and the
	// actor it wrote as.
	Region string `json:"region"`
	Actor  string `json:"actor"`
	// TakenAt is when it was taken (Unix ms, the region's clock).
	TakenAt int64 `json:"taken_at"`
	// Positions maps every origin actor to the highest position of its
	// log the snapshot reflects (the region's own actor included).
	Positions conflict.VV `json:"positions"`
	// Copy marks a node copy (WriteCopy): every key of one node's store,
	// for another node of the same region, not a region snapshot; LogSeq
	// and LogTerm are the region-log position it holds.
	Copy    bool   `json:"copy,omitempty"`
	LogSeq  uint64 `json:"log_seq,omitempty"`
	LogTerm uint64 `json:"log_term,omitempty"`
}

// snapshotTrailer ends a snapshot.
type snapshotTrailer struct {
	Records int64  `json:"records"`
	SHA256  string `json:"sha256"`
}

// SnapshotInfo reports a snapshot written or read.
type SnapshotInfo struct {
	Header  SnapshotHeader
	Records int64
	Bytes   int64
	// Skipped counts records left out of a snapshot written because their
	// stored checksum failed (they are repaired from a peer).
	Skipped int64
	// Unchanged counts records of a snapshot merged that this region
	// already held (or collected).
	Unchanged int64
}

// WriteSnapshot writes a snapshot of the store to w: every record at one
// read timestamp, with the positions it reflects. It holds that read open
// (Badger keeps the versions it needs) until it returns, streams as it
// scans, and stops with ctx. Records whose stored checksum fails are left
// out and reported as suspects.
func (s *Store) WriteSnapshot(ctx context.Context, w io.Writer) (SnapshotInfo, error) {
	if st := s.health.get(); st.State == StorageFailed {
		return SnapshotInfo{}, st.refusal()
	}
	s.merkle.mu.Lock()
	ts, ok := s.snaps.acquire()
	own := s.merkle.oseq
	s.merkle.mu.Unlock()
	if !ok {
		return SnapshotInfo{}, ErrClosed
	}
	defer s.snaps.release(ts)
	txn := s.db.NewTransactionAt(ts, false)
	defer txn.Discard()

	hdr := SnapshotHeader{Format: SnapshotFormat, Region: s.opts.Region, Actor: s.Actor(), TakenAt: s.opts.Clock.Now().Wall, Positions: conflict.VV{}}
	wit := txn.NewIterator(badger.IteratorOptions{Prefix: prefixWatermark, PrefetchValues: true})
	for wit.Rewind(); wit.Valid(); wit.Next() {
		err := wit.Item().Value(func(v []byte) error {
			n, err := decodeU64(v)
			if n > 0 {
				hdr.Positions[string(wit.Item().Key()[len(prefixWatermark):])] = n
			}
			return err
		})
		if err != nil {
			wit.Close()
			return SnapshotInfo{}, fmt.Errorf("snapshot: watermark: %w", err)
		}
	}
	wit.Close()
	if own > 0 {
		hdr.Positions[hdr.Actor] = own
	}

	sw := newSnapshotWriter(w)
	info := SnapshotInfo{Header: hdr}
	if err := sw.header(hdr); err != nil {
		return info, err
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRecord, PrefetchValues: true, PrefetchSize: 256})
	defer it.Close()
	var bad []string
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return info, err
		}
		key := it.Item().Key()[len(prefixRecord):]
		err := it.Item().Value(func(v []byte) error {
			if checkRecordSum(v) != nil || recordBody(v) == nil {
				bad = append(bad, string(key))
				info.Skipped++
				return nil
			}
			info.Records++
			return sw.record(key, v)
		})
		if err != nil {
			return info, fmt.Errorf("snapshot %q: %w", key, err)
		}
	}
	s.addSuspects(bad)
	if err := sw.end(); err != nil {
		return info, err
	}
	info.Bytes = sw.n
	return info, nil
}

// snapshotWriter frames blocks.
type snapshotWriter struct {
	w       *bufio.Writer
	out     io.Writer
	block   []byte // the record block being filled
	records int64
	sum     hash.Hash
	n       int64
	started bool
}

func newSnapshotWriter(w io.Writer) *snapshotWriter {
	return &snapshotWriter{w: bufio.NewWriterSize(w, 64<<10), out: w, sum: sha256.New(), block: make([]byte, 0, snapshotBlockBytes+4096)}
}

func (sw *snapshotWriter) write(typ byte, payload []byte) error {
	if !sw.started {
		sw.started = true
		if _, err := sw.w.Write(snapshotMagic); err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
		sw.n += int64(len(snapshotMagic))
	}
	head := binary.AppendUvarint([]byte{typ}, uint64(len(payload)))
	crc := crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, payload)
	for _, b := range [][]byte{head, payload, binary.LittleEndian.AppendUint32(nil, crc)} {
		if _, err := sw.w.Write(b); err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
		sw.n += int64(len(b))
	}
	return nil
}

func (sw *snapshotWriter) header(h SnapshotHeader) error {
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("snapshot header: %w", err)
	}
	return sw.write(blockHeader, b)
}

func (sw *snapshotWriter) record(key, stored []byte) error {
	sw.block = appendBytes(sw.block, key)
	sw.block = appendBytes(sw.block, stored)
	sw.records++
	if len(sw.block) >= snapshotBlockBytes {
		return sw.flushBlock()
	}
	return nil
}

func (sw *snapshotWriter) flushBlock() error {
	if len(sw.block) == 0 {
		return nil
	}
	sw.sum.Write(sw.block)
	err := sw.write(blockRecords, sw.block)
	sw.block = sw.block[:0]
	if err != nil {
		return err
	}
	// A block is a unit a reader can merge: hand it on now rather than
	// when the buffer fills.
	if err := sw.w.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

func (sw *snapshotWriter) end() error {
	if err := sw.flushBlock(); err != nil {
		return err
	}
	b, err := json.Marshal(snapshotTrailer{Records: sw.records, SHA256: hex.EncodeToString(sw.sum.Sum(nil))})
	if err != nil {
		return err
	}
	if err := sw.write(blockEnd, b); err != nil {
		return err
	}
	if err := sw.w.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// SnapshotReader reads a snapshot stream block by block, verifying every
// block's checksum as it goes and the whole stream at its end.
type SnapshotReader struct {
	r       *bufio.Reader
	hdr     SnapshotHeader
	block   []byte // the rest of the current record block
	sum     hash.Hash
	records int64
	n       int64
	done    bool
}

// NewSnapshotReader reads the magic and the header block of a snapshot.
func NewSnapshotReader(r io.Reader) (*SnapshotReader, error) {
	sr := &SnapshotReader{r: bufio.NewReaderSize(r, 64<<10), sum: sha256.New()}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(sr.r, magic); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrSnapshot, truncation(err, "in its first bytes"))
	}
	sr.n += int64(len(magic))
	if !bytes.Equal(magic, snapshotMagic) {
		if bytes.Equal(magic[:7], snapshotMagic[:7]) {
			return nil, fmt.Errorf("%w: snapshot format %d; this build reads format %d", ErrSnapshot, magic[7], SnapshotFormat)
		}
		return nil, fmt.Errorf("%w: it does not start like a geogate snapshot", ErrSnapshot)
	}
	typ, payload, err := sr.readBlock()
	if err != nil {
		return nil, err
	}
	if typ != blockHeader {
		return nil, fmt.Errorf("%w: the first block is %q, not the header", ErrSnapshot, typ)
	}
	if err := json.Unmarshal(payload, &sr.hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrSnapshot, err)
	}
	if sr.hdr.Format != SnapshotFormat {
		return nil, fmt.Errorf("%w: header format %d; this build reads %d", ErrSnapshot, sr.hdr.Format, SnapshotFormat)
	}
	if err := sr.hdr.Positions.Check(); err != nil {
		return nil, fmt.Errorf("%w: positions: %v", ErrSnapshot, err)
	}
	return sr, nil
}

// Header returns the snapshot's header.
func (sr *SnapshotReader) Header() SnapshotHeader { return sr.hdr }

// Records returns how many records Next has returned so far, and Bytes how
// many bytes of the stream were read.
func (sr *SnapshotReader) Records() int64 { return sr.records }

// Bytes returns how many bytes of the stream were read so far.
func (sr *SnapshotReader) Bytes() int64 { return sr.n }

func truncation(err error, where string) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "the stream ends " + where + " (truncated)"
	}
	return err.Error()
}

// readBlock reads one block and verifies its checksum.
func (sr *SnapshotReader) readBlock() (byte, []byte, error) {
	typ, err := sr.r.ReadByte()
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %s", ErrSnapshot, truncation(err, fmt.Sprintf("after %d bytes, before its end block", sr.n)))
	}
	size, err := binary.ReadUvarint(sr.r)
	if err != nil || size > maxSnapshotBlock {
		return 0, nil, fmt.Errorf("%w: block at byte %d: bad length (%s)", ErrSnapshot, sr.n, truncation(orEOF(err), "inside a block"))
	}
	// Read as the bytes come rather than allocating the length a damaged
	// header may claim.
	var buf bytes.Buffer
	buf.Grow(int(min(size+4, 1<<20)))
	if _, err := io.CopyN(&buf, sr.r, int64(size)+4); err != nil {
		return 0, nil, fmt.Errorf("%w: block at byte %d: %s", ErrSnapshot, sr.n, truncation(err, "inside a block"))
	}
	payload := buf.Bytes()
	head := binary.AppendUvarint([]byte{typ}, size)
	crc := crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, payload[:size])
	if crc != binary.LittleEndian.Uint32(payload[size:]) {
		return 0, nil, fmt.Errorf("%w: block at byte %d: checksum mismatch (the stream was altered)", ErrSnapshot, sr.n)
	}
	sr.n += int64(len(head)) + int64(len(payload))
	return typ, payload[:size], nil
}

func orEOF(err error) error {
	if err == nil {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Next returns the next record, or io.EOF once the stream's end block has
// been read and verified (record count and digest). Any other error wraps
// ErrSnapshot (the stream is damaged or cut) or ErrMalformed (a record
// inside an intact block does not decode).
func (sr *SnapshotReader) Next() (KeyRecord, error) {
	key, stored, err := sr.NextRaw()
	if err != nil {
		return KeyRecord{}, err
	}
	rec, err := DecodeRecord(stored)
	if err != nil {
		return KeyRecord{}, fmt.Errorf("snapshot record %q: %w", key, err)
	}
	return KeyRecord{Key: string(key), Record: rec}, nil
}

// NextRaw returns the next key and value as the stream holds them (for a
// region snapshot, a record key and its stored record; for a node copy,
// any key of the store and its value), or io.EOF once the end block has
// been read and verified. The slices are valid until the next call.
func (sr *SnapshotReader) NextRaw() (key, value []byte, err error) {
	for len(sr.block) == 0 {
		if sr.done {
			return nil, nil, io.EOF
		}
		typ, payload, err := sr.readBlock()
		if err != nil {
			return nil, nil, err
		}
		switch typ {
		case blockRecords:
			sr.sum.Write(payload)
			sr.block = payload
		case blockEnd:
			var tr snapshotTrailer
			if err := json.Unmarshal(payload, &tr); err != nil {
				return nil, nil, fmt.Errorf("%w: end block: %v", ErrSnapshot, err)
			}
			if tr.Records != sr.records || tr.SHA256 != hex.EncodeToString(sr.sum.Sum(nil)) {
				return nil, nil, fmt.Errorf("%w: the end block names %d records (sha256 %.12s…); the stream held %d (a block is missing or repeated)", ErrSnapshot, tr.Records, tr.SHA256, sr.records)
			}
			if _, err := sr.r.ReadByte(); err != io.EOF {
				return nil, nil, fmt.Errorf("%w: bytes after the end block", ErrSnapshot)
			}
			sr.done = true
		default:
			return nil, nil, fmt.Errorf("%w: block type %q out of place", ErrSnapshot, typ)
		}
	}
	rd := reader{b: sr.block}
	key = rd.bytes("snapshot key")
	value = rd.bytes("snapshot record")
	if rd.err != nil {
		return nil, nil, fmt.Errorf("%w: record %d: %v", ErrSnapshot, sr.records+1, rd.err)
	}
	sr.block = rd.b
	sr.records++
	return key, value, nil
}

// VerifySnapshot reads a whole snapshot and returns its header and record
// count, or an error wrapping ErrSnapshot or ErrMalformed: a damaged or
// truncated stream, or a record no correct region holds.
func VerifySnapshot(r io.Reader) (SnapshotInfo, error) {
	sr, err := NewSnapshotReader(r)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if sr.hdr.Copy {
		return SnapshotInfo{Header: sr.hdr}, fmt.Errorf("%w: it is a copy of one node's store (for a node of region %s), not a region snapshot", ErrSnapshot, sr.hdr.Region)
	}
	for {
		kr, err := sr.Next()
		if err == io.EOF {
			return SnapshotInfo{Header: sr.hdr, Records: sr.records, Bytes: sr.n}, nil
		}
		if err != nil {
			return SnapshotInfo{Header: sr.hdr, Records: sr.records, Bytes: sr.n}, err
		}
		if err := checkRecordShape(kr.Key, kr.Record); err != nil {
			return SnapshotInfo{Header: sr.hdr, Records: sr.records, Bytes: sr.n}, err
		}
	}
}

// mergeChunk is how many records MergeSnapshot hands the writer at once.
const mergeChunk = 4096

// MergeSnapshot merges a snapshot stream into the store: each record is
// merged into this region's record of its key (MergeRecords) as the stream
// is read, in chunks, and once the stream's end has been verified the
// watermarks are raised to the snapshot's positions (RaiseWatermarks). A
// stream that turns out damaged or cut returns an error wrapping
// ErrSnapshot: what was merged stays (every record merged is a real
// region's record, and merging is always safe), but no watermark moves, so
// the events the missing part holds are still expected. progress, if set,
// is called after every chunk with the records merged so far.
func (s *Store) MergeSnapshot(ctx context.Context, r io.Reader, progress func(records int64)) (SnapshotInfo, error) {
	sr, err := NewSnapshotReader(r)
	if err != nil {
		return SnapshotInfo{}, err
	}
	hdr := sr.Header()
	if hdr.Copy {
		return SnapshotInfo{Header: hdr}, fmt.Errorf("merge snapshot: %w: it is a copy of one node's store (for a node of region %s), not a region snapshot", ErrSnapshot, hdr.Region)
	}
	if own := s.Actor(); hdr.Positions[own] > s.Seq() {
		return SnapshotInfo{Header: hdr}, fmt.Errorf("merge snapshot: it reflects %s:%d, beyond this region's own log (%d): it comes from another store of this actor", own, hdr.Positions[own], s.Seq())
	}
	info := SnapshotInfo{Header: hdr}
	chunk := make([]KeyRecord, 0, mergeChunk)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		changed, _, err := s.MergeRecords(ctx, chunk, false)
		info.Unchanged += int64(len(chunk) - changed)
		chunk = chunk[:0]
		if progress != nil {
			progress(sr.Records())
		}
		return err
	}
	start := time.Now()
	for {
		kr, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			info.Records, info.Bytes = sr.Records(), sr.Bytes()
			return info, err
		}
		chunk = append(chunk, kr)
		if len(chunk) == mergeChunk {
			if err := flush(); err != nil {
				return info, err
			}
		}
	}
	if err := flush(); err != nil {
		return info, err
	}
	info.Records, info.Bytes = sr.Records(), sr.Bytes()
	if err := s.RaiseWatermarks(ctx, hdr.Positions); err != nil {
		return info, err
	}
	s.log.Info("merged a snapshot", "of", hdr.Region, "actor", hdr.Actor, "records", info.Records, "unchanged", info.Unchanged,
		"bytes", info.Bytes, "took", time.Since(start).Round(time.Millisecond))
	return info, nil
}

// checkRecordShape is CheckRecord without a store (no own-actor check).
func checkRecordShape(key string, rec conflict.Record) error { return checkRecord(key, rec, "", 0) }
