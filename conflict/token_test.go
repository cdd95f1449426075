package conflict

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

func TestTokenRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genTokenVV().Draw(t, "vv")
		tail := rapid.SliceOfN(rapid.Byte(), 0, 8).Draw(t, "tail")
		enc := AppendVV(nil, v)
		got, rest, err := ReadVV(append(enc, tail...))
		if err != nil {
			t.Fatalf("ReadVV(AppendVV(%s)): %v", v, err)
		}
		if !reflect.DeepEqual(got, v) || !bytes.Equal(rest, tail) {
			t.Fatalf("round trip of %s gave %s with rest %x, want rest %x", v, got, rest, tail)
		}
		if !bytes.Equal(AppendVV(nil, got), enc) {
			t.Fatal("equal vectors encoded to different bytes")
		}
		dec, err := DecodeToken(EncodeToken(enc))
		if err != nil || !bytes.Equal(dec, enc) {
			t.Fatalf("DecodeToken(EncodeToken(%x)) = %x, %v", enc, dec, err)
		}
		// Every strict prefix is a truncated token and must be refused.
		cut := rapid.IntRange(0, len(enc)-1).Draw(t, "cut")
		if _, _, err := ReadVV(enc[:cut]); !errors.Is(err, ErrBadToken) {
			t.Fatalf("ReadVV of %d of %d bytes: err %v, want ErrBadToken", cut, len(enc), err)
		}
	})
}

func TestTokenZeroCountersAreDropped(t *testing.T) {
	v := VV{"a~1": 0, "b~1": 3}
	got, rest, err := ReadVV(AppendVV(nil, v))
	if err != nil || len(rest) != 0 || !reflect.DeepEqual(got, VV{"b~1": 3}) || !got.Equal(v) {
		t.Fatalf("ReadVV(AppendVV(%v)) = %v, %x, %v", v, got, rest, err)
	}
}

func TestReadVVGarbage(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var b []byte
		if rapid.Bool().Draw(t, "mutate a valid token") {
			b = AppendVV(nil, genTokenVV().Draw(t, "vv"))
			if len(b) > 0 {
				i := rapid.IntRange(0, len(b)-1).Draw(t, "at")
				b[i] = rapid.Byte().Draw(t, "byte")
			}
		} else {
			b = rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "garbage")
		}
		v, rest, err := ReadVV(b)
		if err != nil {
			if !errors.Is(err, ErrBadToken) || v != nil || rest != nil {
				t.Fatalf("ReadVV(%x) = %v, %x, %v; want nil, nil, ErrBadToken", b, v, rest, err)
			}
			return
		}
		if len(v) > maxTokenActors || len(rest) > len(b) || !bytes.HasSuffix(b, rest) {
			t.Fatalf("ReadVV(%x) = %v, rest %x", b, v, rest)
		}
	})
}

func TestReadVVTable(t *testing.T) {
	uv := func(bs ...uint64) []byte {
		var b []byte
		for _, x := range bs {
			b = binary.AppendUvarint(b, x)
		}
		return b
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty input", nil},
		{"count over the bound", uv(maxTokenActors + 1)},
		{"count without entries", uv(1)},
		{"empty actor name", append(uv(1, 0), uv(1)...)},
		{"actor longer than input", append(uv(1, 10), "abc"...)},
		{"missing counter", append(uv(1, 1), 'a')},
		{"overlong varint", bytes.Repeat([]byte{0xff}, 11)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, _, err := ReadVV(tt.in); !errors.Is(err, ErrBadToken) {
				t.Fatalf("ReadVV(%x) = %v, %v; want ErrBadToken", tt.in, v, err)
			}
		})
	}
	if _, err := DecodeToken("not base64!"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("DecodeToken(bad) err %v, want ErrBadToken", err)
	}
}

func TestAPITokens(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genTokenVV().Draw(t, "vv")
		key := rapid.StringN(1, 20, -1).Draw(t, "key")
		other := rapid.StringN(1, 20, -1).Draw(t, "other")
		tok := ContextToken(key, v)
		got, err := ParseContextToken(key, tok)
		if err != nil || !got.Equal(v) {
			t.Fatalf("ParseContextToken(ContextToken(%q, %s)) = %s, %v", key, v, got, err)
		}
		if other != key {
			if _, err := ParseContextToken(other, tok); !errors.Is(err, ErrTokenKey) {
				t.Fatalf("context token of %q parsed for %q: err %v, want ErrTokenKey", key, other, err)
			}
		}
		s, err := ParseSessionToken(SessionToken(v))
		if err != nil || !s.Equal(v) {
			t.Fatalf("ParseSessionToken(SessionToken(%s)) = %s, %v", v, s, err)
		}
		// One kind is never taken for the other.
		if _, err := ParseSessionToken(tok); !errors.Is(err, ErrBadToken) {
			t.Fatalf("context token parsed as a session: err %v", err)
		}
		if _, err := ParseContextToken(key, SessionToken(v)); !errors.Is(err, ErrBadToken) {
			t.Fatalf("session token parsed as a context: err %v", err)
		}
	})
	if v, err := ParseContextToken("k", ""); v != nil || err != nil {
		t.Fatalf("empty context token = %v, %v; want no context", v, err)
	}
	if v, err := ParseSessionToken(""); len(v) != 0 || err != nil {
		t.Fatalf("empty session token = %v, %v; want an empty session", v, err)
	}
	if _, err := ParseSessionToken(SessionToken(VV{"a~1": 1}) + "AA"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("session token with trailing bytes: err %v, want ErrBadToken", err)
	}
}
