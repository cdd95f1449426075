package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"pgregory.net/rapid"

	"github.com/geogate/geogate/conflict"
)

// genText draws strings that exercise JSON escaping: HTML characters,
// quotes, control characters, U+2028, non-ASCII and invalid UTF-8.
func genText() *rapid.Generator[string] {
	return rapid.OneOf(
		rapid.StringMatching(`[a-z0-9~/-]{0,12}`),
		rapid.SampledFrom([]string{"<b>&</b>", `q"uo\te`, "tab\there", "line\u2028sep\u2029", "é€😀", "\x00\x1f", "bad\xff\xfeutf8"}),
		rapid.String(),
		rapid.Map(rapid.SliceOfN(rapid.Byte(), 0, 12), func(b []byte) string { return string(b) }),
	)
}

// genDoc draws a JSON document: indented (needs compacting), compact, or
// compact without HTML escaping (needs escaping).
func genDoc() *rapid.Generator[json.RawMessage] {
	return rapid.Custom(func(t *rapid.T) json.RawMessage {
		doc := map[string]any{
			"s":    genText().Draw(t, "s"),
			"n":    rapid.Float64().Draw(t, "n"),
			"list": rapid.SliceOfN(genText(), 0, 3).Draw(t, "list"),
			"flag": rapid.Bool().Draw(t, "flag"),
		}
		var v any = doc
		switch rapid.IntRange(0, 3).Draw(t, "shape") {
		case 0:
			v = genText().Draw(t, "str")
		case 1:
			v = nil
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		switch rapid.IntRange(0, 2).Draw(t, "form") {
		case 0:
			enc.SetIndent("", "  ")
		case 1:
			enc.SetEscapeHTML(false)
		}
		if err := enc.Encode(v); err != nil { // NaN or Inf cannot be encoded
			return json.RawMessage(` { "x" : [ 1 , 2 ] } `)
		}
		return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	})
}

// genActor draws a non-empty actor name (actors never are empty).
func genActor() *rapid.Generator[string] {
	return rapid.Custom(func(t *rapid.T) string {
		a := genText().Draw(t, "actor")
		if a == "" {
			return "r~0"
		}
		return a
	})
}

// genVV draws a vector, zero counters included (the encoding drops them).
func genVV() *rapid.Generator[conflict.VV] {
	return rapid.Custom(func(t *rapid.T) conflict.VV {
		if rapid.Bool().Draw(t, "nil") {
			return nil
		}
		return rapid.MapOfN(genActor(), rapid.Uint64Range(0, conflict.MaxCounter), 0, 4).Draw(t, "vv")
	})
}

func genVersion(t *rapid.T, label string) conflict.Version {
	v := conflict.Version{
		Dot:     conflict.Dot{Actor: genActor().Draw(t, label+"actor"), Counter: rapid.Uint64Range(0, conflict.MaxCounter).Draw(t, label+"counter")},
		Deleted: rapid.Bool().Draw(t, label+"deleted"),
		HLC:     conflict.HLC{Wall: rapid.Int64().Draw(t, label+"wall"), Logical: rapid.Uint32().Draw(t, label+"logical")},
		Origin:  genText().Draw(t, label+"origin"),
	}
	if rapid.Bool().Draw(t, label+"hasValue") {
		v.Value = genDoc().Draw(t, label+"value")
	}
	return v
}

func TestNormalizeValueMatchesMarshal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		doc := genDoc().Draw(t, "doc")
		got, err := normalizeValue(doc)
		if err != nil {
			t.Fatalf("normalize %q: %v", doc, err)
		}
		want, err := json.Marshal(doc)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("normalize(%q) = %q, json.Marshal gives %q", doc, got, want)
		}
		again, _ := normalizeValue(got)
		if !bytes.Equal(again, got) {
			t.Fatalf("normalize is not idempotent: %q then %q", got, again)
		}
	})
}

func TestNormalizeValueRejectsInvalid(t *testing.T) {
	for _, v := range []string{`{`, `{"a":}`, `nul`, `1 2`, `"abc`, `[1,]`, `{"a":1}}`, "\"\xff", "\"a\tb\""} {
		if _, err := normalizeValue(json.RawMessage(v)); err == nil {
			t.Errorf("normalize(%q) accepted invalid JSON", v)
		}
	}
	if got, err := normalizeValue(nil); err != nil || got != nil {
		t.Errorf("normalize(nil) = %q, %v; want nil, nil", got, err)
	}
}

// genEvent draws an event as a correct region writes it
// (conflict.Event.Validate holds): DecodeEvent refuses any other.
func genEvent(t *rapid.T) conflict.Event {
	key := genText().Draw(t, "key")
	if key == "" || !utf8.ValidString(key) {
		key = "k"
	}
	v := genVersion(t, "v.")
	v.Dot.Counter = max(v.Dot.Counter, 1)
	v.Origin = conflict.RegionOf(v.Dot.Actor)
	if v.Deleted {
		v.Value = nil
	} else if len(v.Value) == 0 {
		v.Value = json.RawMessage(`{}`)
	}
	ctx := genVV().Draw(t, "ctx")
	if ctx[v.Dot.Actor] >= v.Dot.Counter {
		ctx = maps.Clone(ctx)
		ctx[v.Dot.Actor] = v.Dot.Counter - 1
	}
	return conflict.Event{
		Key:     key,
		Version: v,
		Context: ctx,
		OSeq:    rapid.Uint64Range(v.Dot.Counter, conflict.MaxCounter).Draw(t, "oseq"),
	}
}

func genRecord(t *rapid.T) conflict.Record {
	var r conflict.Record
	if n := rapid.IntRange(-1, 4).Draw(t, "versions"); n >= 0 {
		r.Versions = make([]conflict.Version, 0, n)
		for i := range n {
			r.Versions = append(r.Versions, genVersion(t, string(rune('a'+i))))
		}
	}
	r.Seen = genVV().Draw(t, "seen")
	return r
}

// clobber overwrites b, so a test can check a decoded value does not
// share it.
func clobber(b []byte) {
	for i := range b {
		b[i] = 0xAA
	}
}

// Every event survives AppendEvent then DecodeEvent, the decoded event
// encodes to the same bytes (equal events, equal bytes), and it shares no
// memory with the input.
func TestEventRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ev := genEvent(t)
		prefix := []byte(rapid.StringN(0, 3, -1).Draw(t, "prefix"))
		enc := AppendEvent(prefix, ev)
		if !bytes.HasPrefix(enc, prefix) {
			t.Fatalf("AppendEvent clobbered the buffer it appends to")
		}
		enc = enc[len(prefix):]
		want := bytes.Clone(enc)
		got, err := DecodeEvent(enc)
		if err != nil {
			t.Fatalf("DecodeEvent(AppendEvent(%+v)): %v", ev, err)
		}
		clobber(enc)
		if !eventsEqual(got, ev) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, ev)
		}
		if (len(got.Context) == 0) != (got.Context == nil) {
			t.Fatalf("empty context decoded as %#v, want nil", got.Context)
		}
		if again := AppendEvent(nil, got); !bytes.Equal(again, want) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, want)
		}
	})
}

// Every record survives AppendRecord then DecodeRecord the same way;
// Versions decodes non-nil.
func TestRecordRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := genRecord(t)
		enc := AppendRecord(nil, r)
		want := bytes.Clone(enc)
		got, err := DecodeRecord(enc)
		if err != nil {
			t.Fatalf("DecodeRecord(AppendRecord(%+v)): %v", r, err)
		}
		clobber(enc)
		if !got.Equal(r) || got.Versions == nil {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, r)
		}
		if !bytes.Equal(got.MarshalCanonical(), r.MarshalCanonical()) {
			t.Fatalf("canonical form changed: %s vs %s", got.MarshalCanonical(), r.MarshalCanonical())
		}
		if again := AppendRecord(nil, got); !bytes.Equal(again, want) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, want)
		}
	})
}

// checkDecode decodes b both ways, which must not panic; a failure must
// wrap ErrMalformed, and a success must survive another round trip (the
// input may encode a field non-minimally, so its bytes may differ).
func checkDecode(t interface {
	Helper()
	Fatalf(format string, args ...any)
}, b []byte) {
	t.Helper()
	in := bytes.Clone(b)
	if ev, err := DecodeEvent(b); err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeEvent(%x): error %v does not wrap ErrMalformed", in, err)
		}
	} else {
		if len(ev.Version.Value) > 0 && !json.Valid(ev.Version.Value) {
			t.Fatalf("DecodeEvent(%x) accepted invalid JSON %q", in, ev.Version.Value)
		}
		back, err := DecodeEvent(AppendEvent(nil, ev))
		if err != nil || !eventsEqual(back, ev) {
			t.Fatalf("DecodeEvent(%x) = %+v, which does not round-trip: %+v, %v", in, ev, back, err)
		}
	}
	if r, err := DecodeRecord(b); err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeRecord(%x): error %v does not wrap ErrMalformed", in, err)
		}
	} else {
		back, err := DecodeRecord(AppendRecord(nil, r))
		if err != nil || !back.Equal(r) {
			t.Fatalf("DecodeRecord(%x) = %+v, which does not round-trip: %+v, %v", in, r, back, err)
		}
	}
	if !bytes.Equal(b, in) {
		t.Fatalf("decoding modified its input")
	}
}

// Garbage never panics: random bytes, and valid encodings with bytes
// flipped, cut out or inserted, the format byte kept most of the time so
// the decoders get past it.
func TestDecodeGarbageNeverPanics(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var b []byte
		switch rapid.IntRange(0, 2).Draw(t, "source") {
		case 0:
			b = rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "bytes")
			if len(b) > 0 && rapid.Bool().Draw(t, "format") {
				b[0] = rapid.SampledFrom([]byte{eventV1, recordV1}).Draw(t, "byte")
			}
		case 1:
			b = AppendEvent(nil, genEvent(t))
		case 2:
			b = AppendRecord(nil, genRecord(t))
		}
		for range rapid.IntRange(0, 3).Draw(t, "edits") {
			if len(b) < 2 {
				break
			}
			i := rapid.IntRange(1, len(b)-1).Draw(t, "at")
			switch rapid.IntRange(0, 2).Draw(t, "edit") {
			case 0:
				b[i] = rapid.Byte().Draw(t, "new")
			case 1:
				b = slices.Delete(b, i, min(len(b), i+rapid.IntRange(1, 4).Draw(t, "cut")))
			case 2:
				b = slices.Insert(b, i, rapid.SliceOfN(rapid.Byte(), 1, 4).Draw(t, "insert")...)
			}
		}
		checkDecode(t, b)
	})
}

// Every strict prefix of a valid encoding, and the encoding with a byte
// appended, is refused; no cut panics.
func TestDecodeTruncations(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ev := genEvent(t)
		rec := genRecord(t)
		for _, tc := range []struct {
			name   string
			enc    []byte
			decode func([]byte) error
		}{
			{"event", AppendEvent(nil, ev), func(b []byte) error { _, err := DecodeEvent(b); return err }},
			{"record", AppendRecord(nil, rec), func(b []byte) error { _, err := DecodeRecord(b); return err }},
		} {
			for cut := range len(tc.enc) {
				if err := tc.decode(tc.enc[:cut]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s cut to %d of %d bytes: err %v, want ErrMalformed", tc.name, cut, len(tc.enc), err)
				}
			}
			if err := tc.decode(append(bytes.Clone(tc.enc), rapid.Byte().Draw(t, "extra"))); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s with a trailing byte: err %v, want ErrMalformed", tc.name, err)
			}
		}
	})
}

// FuzzDecode feeds arbitrary bytes to both decoders (go test runs the
// seeds; go test -fuzz FuzzDecode ./store explores further).
func FuzzDecode(f *testing.F) {
	ev := conflict.Event{
		Key: "user/1", OSeq: 7, Context: conflict.VV{"eu~1": 3, "us~2": 1},
		Version: conflict.Version{Dot: conflict.Dot{Actor: "us~2", Counter: 2}, Value: json.RawMessage(`{"a":[1,2]}`),
			HLC: conflict.HLC{Wall: baseWall, Logical: 4}, Origin: "us"},
	}
	rec := conflict.Record{Versions: []conflict.Version{ev.Version, {Dot: conflict.Dot{Actor: "eu~1", Counter: 4}, Deleted: true, Origin: "eu"}}, Seen: ev.Context}
	for _, seed := range [][]byte{nil, {eventV1}, {recordV1}, []byte(`{"k":"x"}`), AppendEvent(nil, ev), AppendRecord(nil, rec), AppendRecord(nil, conflict.Record{})} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

// The layout of each format version is pinned byte by byte: changing it
// needs a new format byte.
func TestEncodingLayout(t *testing.T) {
	ev := conflict.Event{
		Key: "k", OSeq: 300, Context: conflict.VV{"a~1": 2, "zero": 0},
		Version: conflict.Version{Dot: conflict.Dot{Actor: "b~2", Counter: 5}, Value: json.RawMessage(`[1]`),
			HLC: conflict.HLC{Wall: -2, Logical: 1}, Origin: "b"},
	}
	wantEvent := []byte{
		0xE1,
		1, 'k', // key
		3, 'b', '~', '2', 5, // dot
		0,    // not deleted
		3, 1, // wall -2 (zigzag), logical
		1, 'b', // origin
		1, 3, 'a', '~', '1', 2, // context: zero counters dropped
		0xAC, 0x02, // oseq 300
		3, '[', '1', ']', // value
	}
	if got := AppendEvent(nil, ev); !bytes.Equal(got, wantEvent) {
		t.Errorf("event encodes as\n%x\nwant\n%x", got, wantEvent)
	}
	tomb := conflict.Version{Dot: conflict.Dot{Actor: "a~1", Counter: 1}, Deleted: true, HLC: conflict.HLC{Wall: 1}, Origin: "a"}
	body := []byte{
		2,                                       // versions
		3, 'a', '~', '1', 1, 1, 2, 0, 1, 'a', 0, // tombstone, no value
		3, 'b', '~', '2', 5, 0, 3, 1, 1, 'b', 3, '[', '1', ']',
		0, // seen: empty
	}
	wantRecord := append([]byte{0xD2}, body...)
	wantRecord = append(wantRecord, 0x12, 0x55, 0xb7, 0xed) // CRC-32C of the above, little-endian
	rec := conflict.Record{Versions: []conflict.Version{tomb, ev.Version}}
	if got := AppendRecord(nil, rec); !bytes.Equal(got, wantRecord) {
		t.Errorf("record encodes as\n%x\nwant\n%x", got, wantRecord)
	}
	// Records stored before checksums (0xD1: the same body, no checksum)
	// still decode, and hash alike (recordBody).
	v1 := append([]byte{0xD1}, body...)
	if got, err := DecodeRecord(v1); err != nil || !got.Equal(rec) {
		t.Errorf("DecodeRecord(0xD1 record) = %+v, %v; want %+v", got, err, rec)
	}
	if !bytes.Equal(recordBody(v1), recordBody(wantRecord)) {
		t.Errorf("the two formats' bodies differ: %x, %x", recordBody(v1), recordBody(wantRecord))
	}
}

// A stored record altered on disk is refused with ErrChecksum (and
// ErrMalformed), whichever byte changed, even when the rest still parses.
func TestRecordChecksum(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := AppendRecord(nil, genRecord(t))
		i := rapid.IntRange(1, len(b)-1).Draw(t, "byte")
		b[i] ^= byte(rapid.IntRange(1, 255).Draw(t, "flip"))
		_, err := DecodeRecord(b)
		if !errors.Is(err, ErrChecksum) || !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeRecord of a record with byte %d flipped = %v, want ErrChecksum", i, err)
		}
	})
}

// Malformed inputs the decoders must refuse, each for its own reason.
func TestDecodeRefuses(t *testing.T) {
	base := conflict.Event{
		Key: "k", OSeq: 1,
		Version: conflict.Version{Dot: conflict.Dot{Actor: "a~1", Counter: 1}, Value: json.RawMessage(`1`), Origin: "a"},
	}
	withValue := func(v string) []byte {
		ev := base
		ev.Version.Value = json.RawMessage(v)
		return AppendEvent(nil, ev)
	}
	withActor := func(a string) []byte {
		ev := base
		ev.Version.Dot.Actor = a
		return AppendEvent(nil, ev)
	}
	good := AppendEvent(nil, base)
	// Offsets in good: 0 format, 1-2 key, 3-6 actor, 7 counter, 8 deleted,
	// 9 wall, 10 logical.
	patch := func(at int, b ...byte) []byte {
		out := bytes.Clone(good[:at])
		out = append(out, b...)
		return append(out, good[at+1:]...)
	}
	for _, tt := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"json", []byte(`{"k":"k"}`), "unknown format byte 0x7b"},
		{"record byte", append([]byte{recordV1}, good[1:]...), "unknown format byte"},
		{"future version", append([]byte{0xE2}, good[1:]...), "newer than this build reads"},
		{"unknown kind", append([]byte{0x52}, good[1:]...), "unknown format byte 0x52"},
		{"deleted flag 2", patch(8, 2), "deleted flag"},
		{"logical over 32 bits", patch(10, 0x80, 0x80, 0x80, 0x80, 0x10), "hlc logical"},
		{"key length beyond input", patch(1, 0x7f), "key"},
		{"varint overflow", patch(7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "dot counter"},
		{"invalid JSON value", withValue(`{"a":`), "not valid JSON"},
		{"value with trailing garbage", withValue(`1 2`), "not valid JSON"},
		{"empty actor", withActor(""), "empty dot actor"},
		{"trailing bytes", append(bytes.Clone(good), 0), "1 trailing bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeEvent(tt.in)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("DecodeEvent(%x) = %v, want ErrMalformed mentioning %q", tt.in, err, tt.want)
			}
		})
	}
	if _, err := DecodeEvent(good); err != nil {
		t.Fatalf("the unpatched event does not decode: %v", err)
	}

	hugeCount := []byte{recordV1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0}
	if _, err := DecodeRecord(hugeCount); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "version count") {
		t.Errorf("DecodeRecord of a huge version count = %v, want ErrMalformed", err)
	}
	// Records come from this store's own Badger: values are not
	// re-validated.
	rec := conflict.Record{Versions: []conflict.Version{{Dot: conflict.Dot{Actor: "a~1", Counter: 1}, Value: json.RawMessage(`{"a":`)}}}
	if got, err := DecodeRecord(AppendRecord(nil, rec)); err != nil || !got.Equal(rec) {
		t.Errorf("DecodeRecord with an unvalidated value = %+v, %v", got, err)
	}
}

// The store refuses contexts naming the empty actor, which the encodings
// cannot hold, rather than writing a record it could not read back.
func TestEmptyActorRefused(t *testing.T) {
	s := openTest(t, "us", "", nil)
	if _, err := s.Write(t.Context(), Mutation{Key: "k", Value: doc(`1`), Context: conflict.VV{"": 1}}); err == nil {
		t.Fatalf("write with an empty-actor context accepted")
	}
	ev := conflict.Event{Key: "k", OSeq: 1, Version: conflict.Version{Dot: conflict.Dot{Actor: "", Counter: 1}, Value: jsonDoc(`1`)}}
	if _, err := s.Apply(t.Context(), []Incoming{{Event: ev}}); err == nil {
		t.Fatalf("apply of an event with an empty actor accepted")
	}
	ev.Version.Dot.Actor, ev.Context = "eu~1", conflict.VV{"": 1}
	if _, err := s.Apply(t.Context(), []Incoming{{Event: ev}}); err == nil {
		t.Fatalf("apply of an event whose context names the empty actor accepted")
	}
	if _, ok, err := s.Get("k"); ok || err != nil {
		t.Fatalf("get after refused requests: ok %v, err %v", ok, err)
	}
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`2`), Supersede: true})
	if v := mustGet(t, s, "k").Versions; len(v) != 1 || string(v[0].Value) != "2" {
		t.Fatalf("record after a good write = %+v", v)
	}
}

// TestWriteNormalizesValue: the value a write returns, the one stored and
// the one in the outbox event are the same bytes; invalid JSON is refused
// by ParseDoc, and a write without a document without consuming a
// sequence.
func TestWriteNormalizesValue(t *testing.T) {
	s := openTest(t, "us", "", nil)
	res := mustWrite(t, s, Mutation{Key: "k", Value: MustParseDoc("{ \"a\" : \"<x>\" ,\n \"b\": [1, 2] }")})
	const want = `{"a":"\u003cx\u003e","b":[1,2]}`
	if got := string(res.Event.Version.Value); got != want {
		t.Errorf("event value = %s, want %s", got, want)
	}
	if got := string(mustGet(t, s, "k").Versions[0].Value); got != want {
		t.Errorf("stored value = %s, want %s", got, want)
	}
	if ev := decodeEvent(t, mustOutbox(t, s, 0)[0].Data); string(ev.Version.Value) != want {
		t.Errorf("outbox value = %s, want %s", ev.Version.Value, want)
	}
	if !mustGet(t, s, "k").Equal(res.Record) {
		t.Errorf("stored record differs from the write's result")
	}

	for _, bad := range []string{`{"a":`, ``, ` `, `1 2`, `{"a":1}}`, `nul`, "\"\x01\""} {
		if d, err := ParseDoc([]byte(bad)); err == nil {
			t.Errorf("ParseDoc(%q) = %s, want an error", bad, d.JSON())
		}
	}
	if _, err := s.Write(t.Context(), Mutation{Key: "k"}); err == nil {
		t.Fatalf("write without a document accepted")
	}
	if w := mustWrite(t, s, Mutation{Key: "k2", Value: MustParseDoc(`1`)}); w.Event.OSeq != 2 {
		t.Errorf("OSeq after a refused write = %d, want 2", w.Event.OSeq)
	}
}
