package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"unicode/utf8"

	"github.com/geogate/geogate/conflict"
)

// Values (Version.Value) are kept in the form json.Marshal emits: compact
// and HTML-escaped. normalizeValue puts them in that form where they enter
// the store (a local write, a replicated event), so a value reads back, and
// replicates, as the same bytes in every region; values read back from
// stored records already are.

// Doc is one JSON document in the form the store keeps: valid, compact and
// HTML-escaped exactly as json.Marshal writes a json.RawMessage, so it has
// the same bytes in every region. Only ParseDoc makes one, so a Doc needs
// no second check; the zero Doc holds no document. A Doc is immutable.
type Doc struct{ raw json.RawMessage }

// ParseDoc checks that v is one valid JSON document and returns it in the
// store's form. When v already is in that form (the usual case: clients
// and json.Marshal send compact JSON) the Doc shares v's bytes without a
// copy, and the caller must not modify them afterwards.
func ParseDoc(v []byte) (Doc, error) {
	if len(v) == 0 {
		return Doc{}, errors.New("empty: a document is required")
	}
	n, err := normalizeValue(v)
	if err != nil {
		return Doc{}, err
	}
	return Doc{raw: n}, nil
}

// MustParseDoc is ParseDoc for documents known to be valid (literals in
// programs and tests); it panics on an invalid one.
func MustParseDoc(v string) Doc {
	d, err := ParseDoc([]byte(v))
	if err != nil {
		panic(fmt.Sprintf("store.MustParseDoc(%q): %v", v, err))
	}
	return d
}

// JSON returns the document's bytes, which the caller must not modify;
// nil for the zero Doc.
func (d Doc) JSON() json.RawMessage { return d.raw }

// IsZero reports whether d holds no document.
func (d Doc) IsZero() bool { return len(d.raw) == 0 }

// Len is the document's size in bytes.
func (d Doc) Len() int { return len(d.raw) }

// normalizeValue returns v compacted and HTML-escaped as json.Marshal
// writes a json.RawMessage, or an error if v is not valid JSON. An empty
// value (no document) is returned unchanged.
func normalizeValue(v json.RawMessage) (json.RawMessage, error) {
	if len(v) == 0 {
		return v, nil
	}
	// JSON text is UTF-8 (RFC 8259, section 8.1); encoding/json passes
	// invalid bytes inside strings through unchecked.
	if err := checkUTF8(v); err != nil {
		return nil, err
	}
	if isCompactHTMLSafe(v) {
		// Nothing to rewrite: validating is enough (no copy).
		if !json.Valid(v) {
			var buf bytes.Buffer
			return nil, json.Compact(&buf, v) // for the error's detail
		}
		return v, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	if bytes.ContainsAny(out, "<>&\u2028\u2029") {
		var esc bytes.Buffer
		json.HTMLEscape(&esc, out)
		out = esc.Bytes()
	}
	return out, nil
}

// checkUTF8 returns an error naming the first byte of v that is not part
// of valid UTF-8.
func checkUTF8(v []byte) error {
	if utf8.Valid(v) {
		return nil
	}
	for i := 0; i < len(v); {
		r, n := utf8.DecodeRune(v[i:])
		if r == utf8.RuneError && n <= 1 {
			return fmt.Errorf("invalid UTF-8 at byte %d: JSON text must be UTF-8", i)
		}
		i += n
	}
	return nil
}

// isCompactHTMLSafe reports whether compacting and HTML-escaping v would
// leave it unchanged: no whitespace outside strings and no character that
// json.Marshal escapes (<, >, &, U+2028, U+2029). It assumes nothing about
// validity.
func isCompactHTMLSafe(v []byte) bool {
	inString, escaped := false, false
	for i, c := range v {
		switch {
		case c == '<' || c == '>' || c == '&':
			return false
		case c == 0xE2 && i+2 < len(v) && v[i+1] == 0x80 && v[i+2]&^1 == 0xA8:
			return false
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return false
		}
	}
	return true
}

// ErrMalformed is returned, wrapped, for encoded events and records that do
// not decode: an unknown format byte, a truncation, a length beyond the
// input, an out-of-range field, trailing bytes or, for an event, a value
// that is not valid JSON.
var ErrMalformed = errors.New("malformed encoding")

// The format bytes of the encodings: the high nibble names the kind (E for
// an event, D for a record stored under d/), the low nibble the version. A
// new layout takes a new byte; decoders refuse the bytes they do not know
// (JSON, the previous encoding, starts with '{' and is refused too).
const (
	eventV1  = 0xE1
	recordV1 = 0xD1
	recordV2 = 0xD2
)

// ErrChecksum is returned, wrapped together with ErrMalformed, for a stored
// record whose checksum does not match its bytes: it was altered on disk.
// Such a record is never served; the region repairs it from a peer.
var ErrChecksum = errors.New("record checksum mismatch")

// castagnoli is the CRC-32C table of record checksums (hardware-assisted
// on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordChecksumBytes is the size of a 0xD2 record's trailing checksum.
const recordChecksumBytes = 4

// minVersionBytes is the smallest encoded version (every field one byte),
// bounding the version count a record of a given length may claim.
const minVersionBytes = 7

// AppendEvent appends the binary encoding of ev to b and returns the
// extended slice. It is the form of OutboxEntry.Data, published unchanged
// to the replication stream and decoded by DecodeEvent in other regions.
// The format is internal to geogate and versioned by its first byte; every
// region must run a build that decodes the version the others write.
// Version 0xE1 is, with integers and lengths as uvarints unless noted and
// a string or the value as its length then its bytes:
//
//	0xE1 key dot.actor dot.counter deleted(1 byte: 0|1) hlc.wall(zigzag
//	varint) hlc.logical origin context(conflict.AppendVV) oseq value
//
// The value is the raw JSON (empty for none). Equal events encode to equal
// bytes. ev.Context must not give the empty actor a counter: the vector
// encoding cannot hold it (the store refuses such contexts).
func AppendEvent(b []byte, ev conflict.Event) []byte {
	b = append(b, eventV1)
	b = appendBytes(b, ev.Key)
	b = appendVersionHead(b, ev.Version)
	b = conflict.AppendVV(b, ev.Context)
	b = binary.AppendUvarint(b, ev.OSeq)
	return appendBytes(b, ev.Version.Value)
}

// DecodeEvent decodes an event written by AppendEvent. It never panics:
// any input that is not exactly one well-formed event, with a non-empty
// dot actor and a value that is valid JSON (the bytes crossed the network),
// yields an error wrapping ErrMalformed. The event does not retain b. An
// empty context decodes as nil.
func DecodeEvent(b []byte) (conflict.Event, error) {
	if len(b) == 0 || b[0] != eventV1 {
		return conflict.Event{}, fmt.Errorf("decode event: %w", formatError(b))
	}
	var ev conflict.Event
	r := reader{b: b[1:]}
	ev.Key = r.str("key")
	ev.Version = r.versionHead()
	ev.Context = r.vv("context")
	ev.OSeq = r.uvarint("oseq")
	value := r.bytes("value")
	r.end()
	switch {
	case r.err != nil:
		return conflict.Event{}, fmt.Errorf("decode event: %w", r.err)
	case ev.Version.Dot.Actor == "":
		return conflict.Event{}, fmt.Errorf("decode event: %w: empty dot actor", ErrMalformed)
	case ev.Key == "" || !utf8.ValidString(ev.Key):
		return conflict.Event{}, fmt.Errorf("decode event: %w: key is empty or not UTF-8", ErrMalformed)
	case len(value) > 0 && (!json.Valid(value) || !utf8.Valid(value)):
		return conflict.Event{}, fmt.Errorf("decode event %q: %w: value is not valid JSON", ev.Key, ErrMalformed)
	}
	if len(value) > 0 {
		ev.Version.Value = bytes.Clone(value)
	}
	if err := ev.Validate(); err != nil {
		return conflict.Event{}, fmt.Errorf("decode event %q: %w: %v", ev.Key, ErrMalformed, err)
	}
	return ev, nil
}

// AppendRecord appends the binary encoding of r to b and returns the
// extended slice; it is the form of a record stored under d/<key>. The
// format is internal to the store and versioned by its first byte. Version
// 0xD2, which AppendRecord writes, is the body of version 0xD1 followed by
// a CRC-32C (Castagnoli, little-endian) of everything before it, format
// byte included; 0xD1, written before checksums, is, in the terms of
// AppendEvent:
//
//	0xD1 count (dot.actor dot.counter deleted hlc.wall hlc.logical origin
//	value)*count seen(conflict.AppendVV)
//
// Versions keep their order. r.Seen must not give the empty actor a
// counter. Equal records have equal bytes.
func AppendRecord(b []byte, r conflict.Record) []byte {
	start := len(b)
	b = append(b, recordV2)
	b = binary.AppendUvarint(b, uint64(len(r.Versions)))
	for _, v := range r.Versions {
		b = appendVersionHead(b, v)
		b = appendBytes(b, v.Value)
	}
	b = conflict.AppendVV(b, r.Seen)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// recordBody returns the part of a stored record's encoding that is the
// same in every format version (the bytes between the format byte and the
// checksum), or nil for bytes that are neither format. It does not verify
// the checksum.
func recordBody(b []byte) []byte {
	switch {
	case len(b) >= 1+recordChecksumBytes && b[0] == recordV2:
		return b[1 : len(b)-recordChecksumBytes]
	case len(b) >= 1 && b[0] == recordV1:
		return b[1:]
	}
	return nil
}

// checkRecordSum verifies the checksum of a 0xD2 record (0xD1 records have
// none).
func checkRecordSum(b []byte) error {
	if len(b) == 0 || b[0] != recordV2 {
		return nil
	}
	if len(b) < 1+recordChecksumBytes {
		return fmt.Errorf("%w: record shorter than its checksum", ErrMalformed)
	}
	n := len(b) - recordChecksumBytes
	if crc32.Checksum(b[:n], castagnoli) != binary.LittleEndian.Uint32(b[n:]) {
		return fmt.Errorf("%w: %w", ErrMalformed, ErrChecksum)
	}
	return nil
}

// DecodeRecord decodes a record written by AppendRecord (either format
// version). It never panics: malformed input yields an error wrapping
// ErrMalformed, and one whose checksum does not match also wraps
// ErrChecksum. Values are not validated as JSON (the store wrote them). The
// record does not retain b: Badger's value buffers may be passed. Versions
// is never nil; an empty Seen decodes as nil.
func DecodeRecord(b []byte) (conflict.Record, error) {
	if len(b) == 0 || (b[0] != recordV1 && b[0] != recordV2) {
		return conflict.Record{}, fmt.Errorf("decode record: %w", formatError(b))
	}
	if err := checkRecordSum(b); err != nil {
		return conflict.Record{}, fmt.Errorf("decode record: %w", err)
	}
	r := reader{b: recordBody(b)}
	n := r.uvarint("version count")
	if r.err == nil && n > uint64(len(r.b))/minVersionBytes {
		r.fail("version count")
	}
	var rec conflict.Record
	if r.err == nil {
		rec.Versions = make([]conflict.Version, n)
	}
	for i := range rec.Versions {
		v := r.versionHead()
		if value := r.bytes("value"); len(value) > 0 {
			v.Value = bytes.Clone(value)
		}
		rec.Versions[i] = v
	}
	rec.Seen = r.vv("seen")
	r.end()
	if r.err != nil {
		return conflict.Record{}, fmt.Errorf("decode record: %w", r.err)
	}
	return rec, nil
}

func formatError(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", ErrMalformed)
	}
	if b[0]&0xF0 == eventV1&0xF0 && b[0] > eventV1 {
		return fmt.Errorf("%w: event format version %d (byte %#02x) is newer than this build reads (version %d): the region that wrote it runs a newer geogate; upgrade this region", ErrMalformed, b[0]&0x0F, b[0], eventV1&0x0F)
	}
	return fmt.Errorf("%w: unknown format byte %#02x", ErrMalformed, b[0])
}

// appendVersionHead appends every field of v but its value.
func appendVersionHead(b []byte, v conflict.Version) []byte {
	b = appendBytes(b, v.Dot.Actor)
	b = binary.AppendUvarint(b, v.Dot.Counter)
	deleted := byte(0)
	if v.Deleted {
		deleted = 1
	}
	b = append(b, deleted)
	b = binary.AppendVarint(b, v.HLC.Wall)
	b = binary.AppendUvarint(b, uint64(v.HLC.Logical))
	return appendBytes(b, v.Origin)
}

func appendBytes[T ~string | ~[]byte](b []byte, s T) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes fields from the front of b. The first failure is kept in
// err, and every later read returns a zero value, so a decoder reads all
// its fields and checks err once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s", ErrMalformed, what)
	}
	r.b = nil
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[k:]
	return v
}

// bytes returns the next length-prefixed field, aliasing the input (capacity
// capped at its length).
func (r *reader) bytes(what string) []byte {
	n := r.uvarint(what)
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(what)
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) str(what string) string { return string(r.bytes(what)) }

func (r *reader) flag(what string) bool {
	if r.err != nil {
		return false
	}
	if len(r.b) == 0 || r.b[0] > 1 {
		r.fail(what)
		return false
	}
	f := r.b[0] == 1
	r.b = r.b[1:]
	return f
}

func (r *reader) vv(what string) conflict.VV {
	if r.err != nil {
		return nil
	}
	v, rest, err := conflict.ReadVV(r.b)
	if err != nil {
		r.err = fmt.Errorf("%w: bad %s: %w", ErrMalformed, what, err)
		r.b = nil
		return nil
	}
	r.b = rest
	if len(v) == 0 {
		return nil
	}
	return v
}

// versionHead reads the fields appendVersionHead wrote. An origin that is
// a prefix of the actor (the region of a region~epoch actor, always so for
// versions the store writes) shares the actor's string.
func (r *reader) versionHead() conflict.Version {
	var v conflict.Version
	v.Dot.Actor = r.str("dot actor")
	v.Dot.Counter = r.uvarint("dot counter")
	v.Deleted = r.flag("deleted flag")
	v.HLC.Wall = r.varint("hlc wall")
	logical := r.uvarint("hlc logical")
	if logical > math.MaxUint32 {
		r.fail("hlc logical")
	}
	v.HLC.Logical = uint32(logical)
	origin := r.bytes("origin")
	if len(origin) <= len(v.Dot.Actor) && string(origin) == v.Dot.Actor[:len(origin)] {
		v.Origin = v.Dot.Actor[:len(origin)]
	} else {
		v.Origin = string(origin)
	}
	return v
}

// end fails the read if bytes are left over.
func (r *reader) end() {
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
}
