package store

import (
	"bytes"
	"encoding/json"
	"testing"

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

func genVV() *rapid.Generator[conflict.VV] {
	return rapid.Custom(func(t *rapid.T) conflict.VV {
		if rapid.Bool().Draw(t, "nil") {
			return nil
		}
		return rapid.MapOfN(genText(), rapid.Uint64Range(0, 1<<62), 0, 4).Draw(t, "vv")
	})
}

func genVersion(t *rapid.T, label string) conflict.Version {
	v := conflict.Version{
		Dot:     conflict.Dot{Actor: genText().Draw(t, label+"actor"), Counter: rapid.Uint64().Draw(t, label+"counter")},
		Deleted: rapid.Bool().Draw(t, label+"deleted"),
		HLC:     conflict.HLC{Wall: rapid.Int64().Draw(t, label+"wall"), Logical: rapid.Uint32().Draw(t, label+"logical")},
		Origin:  genText().Draw(t, label+"origin"),
	}
	if rapid.Bool().Draw(t, label+"hasValue") {
		v.Value = genDoc().Draw(t, label+"value")
	}
	return v
}

// normalized returns v with its value as the store keeps it.
func normalized(t *rapid.T, v conflict.Version) conflict.Version {
	n, err := normalizeValue(v.Value)
	if err != nil {
		t.Fatalf("normalize %q: %v", v.Value, err)
	}
	v.Value = n
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

func TestAppendEventMatchesMarshal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ev := conflict.Event{
			Key:     genText().Draw(t, "key"),
			Version: normalized(t, genVersion(t, "v.")),
			Context: genVV().Draw(t, "ctx"),
			OSeq:    rapid.Uint64().Draw(t, "oseq"),
		}
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if got := appendEvent(nil, ev); !bytes.Equal(got, want) {
			t.Fatalf("appendEvent = %s\njson.Marshal = %s", got, want)
		}
	})
}

func TestAppendRecordMatchesMarshal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var r conflict.Record
		switch n := rapid.IntRange(-1, 4).Draw(t, "versions"); n {
		case -1: // nil slice
		default:
			r.Versions = make([]conflict.Version, 0, n)
			for i := range n {
				r.Versions = append(r.Versions, normalized(t, genVersion(t, string(rune('a'+i)))))
			}
		}
		r.Seen = genVV().Draw(t, "seen")
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		got := appendRecord(nil, r)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendRecord = %s\njson.Marshal = %s", got, want)
		}
		var back conflict.Record
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("decode: %v", err)
		}
	})
}

// TestWriteNormalizesValue: the value a write returns, the one stored and
// the one in the outbox event are the same bytes; invalid JSON is refused
// without consuming a sequence.
func TestWriteNormalizesValue(t *testing.T) {
	s := openTest(t, "us", "", nil)
	res := mustWrite(t, s, Mutation{Key: "k", Value: json.RawMessage("{ \"a\" : \"<x>\" ,\n \"b\": [1, 2] }")})
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

	if _, err := s.Write(t.Context(), Mutation{Key: "k", Value: json.RawMessage(`{"a":`)}); err == nil {
		t.Fatalf("write of invalid JSON accepted")
	}
	if w := mustWrite(t, s, Mutation{Key: "k2", Value: json.RawMessage(`1`)}); w.Event.OSeq != 2 {
		t.Errorf("OSeq after a refused write = %d, want 2", w.Event.OSeq)
	}
}
