package conflict

import (
	"hash/fnv"
	"testing"
)

// BenchmarkSignToken is the cost of signing one context token of a
// two-actor vector, as each write's answer does twice (context, session).
func BenchmarkSignToken(b *testing.B) {
	key, err := NewTokenKey(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	vv := VV{"us-east~1a2b3c4d": 1234, "eu-west~5e6f7a8b": 99}
	b.ReportAllocs()
	for b.Loop() {
		SignToken(TokenContext, key, "user/42/profile", vv)
	}
}

// BenchmarkVerifyToken is the cost of verifying one.
func BenchmarkVerifyToken(b *testing.B) {
	key, err := NewTokenKey(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	tok := SignToken(TokenContext, key, "user/42/profile", VV{"us-east~1a2b3c4d": 1234, "eu-west~5e6f7a8b": 99})
	keys := []TokenKey{key}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyToken(TokenContext, keys, "user/42/profile", tok); err != nil {
			b.Fatal(err)
		}
	}
}

// docKeyHash is FNV-1a: the same as hash/fnv's, which tokens issued before
// it was inlined carry.
func TestDocKeyHashIsFNV1a(t *testing.T) {
	for _, k := range []string{"", "a", "user/42/profile", "ключ"} {
		h := fnv.New64a()
		h.Write([]byte(k))
		if got, want := docKeyHash(k), h.Sum64(); got != want {
			t.Errorf("docKeyHash(%q) = %x, want %x", k, got, want)
		}
	}
}
