package store

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"

	"github.com/geogate/geogate/conflict"
)

// The writer encodes every record and every outbox event it commits. These
// appenders produce exactly the bytes json.Marshal produces for
// conflict.Event and conflict.Record (a property test holds them to it), at
// a fraction of the cost, provided every Version.Value is already in the
// form json.Marshal would emit: compact and HTML-escaped. normalizeValue
// puts values in that form where they enter the store (a local write, a
// replicated event); values read back from stored records already are.

// normalizeValue returns v compacted and HTML-escaped as json.Marshal
// writes a json.RawMessage, or an error if v is not valid JSON. An empty
// value (no document) is returned unchanged.
func normalizeValue(v json.RawMessage) (json.RawMessage, error) {
	if len(v) == 0 {
		return v, nil
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

// appendEvent appends ev as json.Marshal encodes it.
func appendEvent(b []byte, ev conflict.Event) []byte {
	b = append(b, `{"k":`...)
	b = appendString(b, ev.Key)
	b = append(b, `,"v":`...)
	b = appendVersion(b, ev.Version)
	if len(ev.Context) > 0 {
		b = append(b, `,"ctx":`...)
		b = appendVV(b, ev.Context)
	}
	b = append(b, `,"o":`...)
	b = strconv.AppendUint(b, ev.OSeq, 10)
	return append(b, '}')
}

// appendRecord appends r as json.Marshal encodes it.
func appendRecord(b []byte, r conflict.Record) []byte {
	b = append(b, `{"versions":`...)
	if r.Versions == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, v := range r.Versions {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendVersion(b, v)
		}
		b = append(b, ']')
	}
	if len(r.Seen) > 0 {
		b = append(b, `,"seen":`...)
		b = appendVV(b, r.Seen)
	}
	return append(b, '}')
}

func appendVersion(b []byte, v conflict.Version) []byte {
	b = append(b, `{"dot":{"a":`...)
	b = appendString(b, v.Dot.Actor)
	b = append(b, `,"c":`...)
	b = strconv.AppendUint(b, v.Dot.Counter, 10)
	b = append(b, '}')
	if len(v.Value) > 0 {
		b = append(b, `,"value":`...)
		b = append(b, v.Value...)
	}
	if v.Deleted {
		b = append(b, `,"deleted":true`...)
	}
	b = append(b, `,"hlc":{"w":`...)
	b = strconv.AppendInt(b, v.HLC.Wall, 10)
	b = append(b, `,"l":`...)
	b = strconv.AppendUint(b, uint64(v.HLC.Logical), 10)
	b = append(b, `},"origin":`...)
	b = appendString(b, v.Origin)
	return append(b, '}')
}

// appendVV encodes a vector as json.Marshal encodes a map: every entry,
// zeros included, keys sorted.
func appendVV(b []byte, v conflict.VV) []byte {
	b = append(b, '{')
	for i, a := range slices.Sorted(maps.Keys(v)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, a)
		b = append(b, ':')
		b = strconv.AppendUint(b, v[a], 10)
	}
	return append(b, '}')
}

// appendString quotes s as json.Marshal does. Plain printable ASCII (the
// common case: keys, actors, region names) is copied; anything else is left
// to encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
