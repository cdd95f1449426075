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

// TestReadVVRefusesCountersBeyondMax: a counter no region can reach (the
// forged 2^64-1 that made a write's dot wrap) does not decode.
func TestReadVVRefusesCountersBeyondMax(t *testing.T) {
	for _, c := range []uint64{MaxCounter + 1, 1<<64 - 1} {
		if _, _, err := ReadVV(AppendVV(nil, VV{"a~1": c})); !errors.Is(err, ErrBadToken) {
			t.Errorf("counter %d: err %v, want ErrBadToken", c, err)
		}
	}
	if _, _, err := ReadVV(AppendVV(nil, VV{"a~1": MaxCounter})); err != nil {
		t.Errorf("counter MaxCounter refused: %v", err)
	}
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

func testKey(t interface{ Fatalf(string, ...any) }, b byte) TokenKey {
	k, err := NewTokenKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatalf("%v", err)
	}
	return k
}

func TestAPITokens(t *testing.T) {
	k1, k2, other := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	keys := []TokenKey{k1, k2}
	rapid.Check(t, func(t *rapid.T) {
		v := genTokenVV().Draw(t, "vv")
		key := rapid.StringN(1, 20, -1).Draw(t, "key")
		otherKey := rapid.StringN(1, 20, -1).Draw(t, "other")
		signer := rapid.SampledFrom(keys).Draw(t, "signer")
		tok := SignToken(TokenContext, signer, key, v)
		if got, err := VerifyToken(TokenContext, keys, key, tok); err != nil || !got.Equal(v) {
			t.Fatalf("VerifyToken(SignToken(%q, %s)) = %s, %v", key, v, got, err)
		}
		if got, err := PeekToken(TokenContext, key, tok); err != nil || !got.Equal(v) {
			t.Fatalf("PeekToken = %s, %v", got, err)
		}
		if otherKey != key {
			if _, err := VerifyToken(TokenContext, keys, otherKey, tok); !errors.Is(err, ErrTokenKey) {
				t.Fatalf("context token of %q verified for %q: err %v, want ErrTokenKey", key, otherKey, err)
			}
		}
		if _, err := VerifyToken(TokenContext, []TokenKey{other}, key, tok); !errors.Is(err, ErrTokenKeyID) {
			t.Fatalf("token verified under a key that did not sign it: %v", err)
		}
		// Any change of a byte before the MAC, or of the MAC, is caught.
		raw, _ := DecodeToken(tok)
		at := rapid.IntRange(1, len(raw)-1).Draw(t, "flip")
		raw[at] ^= 1 << rapid.IntRange(0, 7).Draw(t, "bit")
		if _, err := VerifyToken(TokenContext, keys, key, EncodeToken(raw)); err == nil {
			t.Fatalf("a token altered at byte %d verified", at)
		}
		s := SignToken(TokenSession, signer, "", v)
		if got, err := VerifyToken(TokenSession, keys, "", s); err != nil || !got.Equal(v) {
			t.Fatalf("session round trip = %s, %v", got, err)
		}
		// One kind is never taken for the other.
		if _, err := VerifyToken(TokenSession, keys, "", tok); !errors.Is(err, ErrBadToken) {
			t.Fatalf("context token verified as a session: err %v", err)
		}
		if _, err := VerifyToken(TokenContext, keys, key, s); !errors.Is(err, ErrBadToken) {
			t.Fatalf("session token verified as a context: err %v", err)
		}
	})
	// A forgery by someone who knows the format but not the key.
	forged := SignToken(TokenSession, TokenKey{secret: bytes.Repeat([]byte{9}, 32), id: k1.id}, "", VV{"a~1": 1})
	if _, err := VerifyToken(TokenSession, keys, "", forged); !errors.Is(err, ErrTokenForged) {
		t.Fatalf("forged token: err %v, want ErrTokenForged", err)
	}
	if got := SplitTokens(" a, ,b,"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("SplitTokens = %q", got)
	}
}

// FuzzTokens feeds VerifyToken and PeekToken any header a client might
// send: they never panic, refuse with ErrBadToken or a signature error,
// and whatever verifies also peeks to the same vector and re-signs to the
// same token.
func FuzzTokens(f *testing.F) {
	key := testKey(f, 1)
	f.Add(SignToken(TokenContext, key, "k", VV{"a~1": 3}), "k")
	f.Add(SignToken(TokenSession, key, "", VV{"a~1": 3, "b~2": 1}), "")
	f.Add("AAAA", "k")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, token, docKey string) {
		for _, kind := range []byte{TokenContext, TokenSession} {
			vv, err := VerifyToken(kind, []TokenKey{key}, docKey, token)
			if err != nil {
				if !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrTokenForged) && !errors.Is(err, ErrTokenKeyID) && !errors.Is(err, ErrTokenKey) {
					t.Fatalf("VerifyToken(%q): unexpected error %v", token, err)
				}
				continue
			}
			if err := vv.Check(); err != nil {
				t.Fatalf("a verified token holds an impossible vector: %v", err)
			}
			peek, err := PeekToken(kind, docKey, token)
			if err != nil || !peek.Equal(vv) {
				t.Fatalf("PeekToken = %v, %v; VerifyToken gave %v", peek, err, vv)
			}
			if again := SignToken(kind, key, docKey, vv); again != token {
				if _, err := VerifyToken(kind, []TokenKey{key}, docKey, again); err != nil {
					t.Fatalf("re-signed token does not verify: %v", err)
				}
			}
		}
	})
}
