package conflict

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
)

// ErrBadToken is returned for a context or session token that does not
// decode. Tokens are opaque to clients; a bad one is a client error.
var ErrBadToken = errors.New("malformed token")

// maxTokenActors bounds what a decoded token may hold so a hostile token
// cannot make the gateway allocate without limit.
const maxTokenActors = 4096

// AppendVV appends a compact binary encoding of v: a count, then each actor
// (sorted) with its counter. Equal vectors encode to equal bytes.
func AppendVV(b []byte, v VV) []byte {
	actors := v.Actors()
	b = binary.AppendUvarint(b, uint64(len(actors)))
	for _, a := range actors {
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
		b = binary.AppendUvarint(b, v[a])
	}
	return b
}

// ReadVV decodes a vector written by AppendVV from the front of b and
// returns it with the remaining bytes. A counter beyond MaxCounter is
// refused (ErrBadToken): no region writes one.
func ReadVV(b []byte) (VV, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxTokenActors {
		return nil, nil, fmt.Errorf("%w: bad actor count", ErrBadToken)
	}
	b = b[k:]
	// Each actor takes at least 3 bytes: size the map by what b can hold,
	// not by what it claims, so a tiny hostile token allocates little.
	v := make(VV, min(n, uint64(len(b)/3)))
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l == 0 || l > uint64(len(b)-k) {
			return nil, nil, fmt.Errorf("%w: bad actor name", ErrBadToken)
		}
		actor := string(b[k : k+int(l)])
		b = b[k+int(l):]
		c, k := binary.Uvarint(b)
		if k <= 0 || c > MaxCounter {
			return nil, nil, fmt.Errorf("%w: bad counter", ErrBadToken)
		}
		b = b[k:]
		v[actor] = c
	}
	return v, b, nil
}

// EncodeToken renders bytes as an opaque base64url token (no padding).
func EncodeToken(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// DecodeToken reverses EncodeToken.
func DecodeToken(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url", ErrBadToken)
	}
	return b, nil
}

// The HTTP API's two tokens, context and session, are authenticated
// vectors:
//
//	kind(1: 'C' context, 'S' session) keyID(TokenKeyIDLen)
//	[keyHash(8): contexts only] vector(AppendVV) mac(TokenMACLen)
//
// base64url-encoded (EncodeToken). mac is the first TokenMACLen bytes of
// HMAC-SHA256 under the signing key over everything before it and the
// document key (a context is bound to its key). keyID, the first bytes of
// SHA-256 of the signing key, says which key signed it, so a token signed
// with a key a region does not hold is told apart from a forged one;
// keyHash, an FNV-1a hash of the document key, tells a context passed with
// the wrong key apart. The vector is not secret: a client reads it with
// PeekToken (to compare contexts, or to keep the newest of two sessions),
// but only a holder of a key makes one (SignToken) that VerifyToken
// accepts.

// Token kinds, the first byte of a decoded token.
const (
	TokenContext byte = 'C'
	TokenSession byte = 'S'
)

// Lengths of a token's fields.
const (
	TokenKeyIDLen  = 4
	TokenMACLen    = 16
	tokenKeyLen    = 32
	tokenKeyHashLn = 8
)

var (
	// ErrTokenForged is returned by VerifyToken for a token whose MAC does
	// not verify: forged, altered, or signed with another secret under a
	// colliding key ID.
	ErrTokenForged = errors.New("token not issued by this deployment: its signature does not verify (forged or altered)")
	// ErrTokenKeyID is returned by VerifyToken for a token signed with a
	// key not among those given.
	ErrTokenKeyID = errors.New("token signed with a key this region does not hold (another deployment, or a retired key)")
	// ErrTokenKey is returned for a context token passed with another
	// document key than the one it was issued for.
	ErrTokenKey = errors.New("context token belongs to another key")
)

// TokenKey is a secret that signs and verifies API tokens. It is safe for
// concurrent use.
type TokenKey struct {
	secret []byte
	id     [TokenKeyIDLen]byte
	// macs holds HMAC states keyed with secret, reused from token to
	// token: keying one costs two SHA-256 blocks and a few allocations,
	// as much as the MAC of a token itself.
	macs *sync.Pool
}

// NewTokenKey returns the key for a 32-byte secret.
func NewTokenKey(secret []byte) (TokenKey, error) {
	if len(secret) != tokenKeyLen {
		return TokenKey{}, fmt.Errorf("a token key is %d bytes, got %d", tokenKeyLen, len(secret))
	}
	sum := sha256.Sum256(secret)
	k := TokenKey{secret: bytes.Clone(secret), id: [TokenKeyIDLen]byte(sum[:TokenKeyIDLen])}
	k.macs = &sync.Pool{New: func() any { return hmac.New(sha256.New, k.secret) }}
	return k, nil
}

func tokenHeadLen(kind byte) int {
	if kind == TokenContext {
		return 1 + TokenKeyIDLen + tokenKeyHashLn
	}
	return 1 + TokenKeyIDLen
}

// docKeyHash is the 64-bit FNV-1a hash of key (hash/fnv's New64a, without
// its allocations).
func docKeyHash(key string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime
	}
	return h
}

// tokenMAC appends to dst the MAC of a token's body bound to docKey.
func tokenMAC(dst []byte, key TokenKey, body []byte, docKey string) []byte {
	var m hash.Hash
	if key.macs != nil {
		m = key.macs.Get().(hash.Hash)
		m.Reset()
		defer key.macs.Put(m)
	} else {
		m = hmac.New(sha256.New, key.secret)
	}
	m.Write(body)
	var n [binary.MaxVarintLen64]byte
	m.Write(n[:binary.PutUvarint(n[:], uint64(len(docKey)))])
	m.Write([]byte(docKey))
	var sum [sha256.Size]byte
	return append(dst, m.Sum(sum[:0])[:TokenMACLen]...)
}

// SignToken returns the token of kind over vv, signed with key; docKey
// binds a context token to its document key (ignored for sessions). Equal
// inputs give equal tokens.
func SignToken(kind byte, key TokenKey, docKey string, vv VV) string {
	b := make([]byte, 0, tokenHeadLen(kind)+12*len(vv)+TokenMACLen)
	b = append(b, kind)
	b = append(b, key.id[:]...)
	if kind == TokenContext {
		b = binary.BigEndian.AppendUint64(b, docKeyHash(docKey))
	}
	b = AppendVV(b, vv)
	return EncodeToken(tokenMAC(b, key, b, docKey))
}

// splitToken decodes a token of kind into its head, vector bytes and MAC.
func splitToken(kind byte, token string) (head, vector, mac []byte, err error) {
	b, err := DecodeToken(token)
	if err != nil {
		return nil, nil, nil, err
	}
	h := tokenHeadLen(kind)
	if len(b) < h+TokenMACLen || b[0] != kind {
		name := "context"
		if kind == TokenSession {
			name = "session"
		}
		return nil, nil, nil, fmt.Errorf("%w: not a %s token", ErrBadToken, name)
	}
	return b[:h], b[h : len(b)-TokenMACLen], b[len(b)-TokenMACLen:], nil
}

// readAll reads one vector that must fill b.
func readAll(b []byte) (VV, error) {
	vv, rest, err := ReadVV(b)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", ErrBadToken)
	}
	return vv, nil
}

// VerifyToken authenticates a token of kind under one of keys (for a
// context, bound to docKey) and returns its vector. It fails with
// ErrBadToken (malformed), ErrTokenKeyID (signed with a key not given),
// ErrTokenKey (a context for another document key) or ErrTokenForged.
func VerifyToken(kind byte, keys []TokenKey, docKey, token string) (VV, error) {
	head, vector, mac, err := splitToken(kind, token)
	if err != nil {
		return nil, err
	}
	id := [TokenKeyIDLen]byte(head[1 : 1+TokenKeyIDLen])
	i := slices.IndexFunc(keys, func(k TokenKey) bool { return k.id == id })
	if i < 0 {
		return nil, ErrTokenKeyID
	}
	if kind == TokenContext && binary.BigEndian.Uint64(head[1+TokenKeyIDLen:]) != docKeyHash(docKey) {
		return nil, ErrTokenKey
	}
	body := make([]byte, 0, len(head)+len(vector))
	body = append(append(body, head...), vector...)
	var want [TokenMACLen]byte
	if !hmac.Equal(mac, tokenMAC(want[:0], keys[i], body, docKey)) {
		return nil, ErrTokenForged
	}
	return readAll(vector)
}

// PeekToken returns the vector of a token of kind without authenticating
// it: for clients, which cannot verify tokens and only compare them. For a
// context, docKey is checked against the token's key hash (ErrTokenKey).
func PeekToken(kind byte, docKey, token string) (VV, error) {
	head, vector, _, err := splitToken(kind, token)
	if err != nil {
		return nil, err
	}
	if kind == TokenContext && binary.BigEndian.Uint64(head[1+TokenKeyIDLen:]) != docKeyHash(docKey) {
		return nil, ErrTokenKey
	}
	return readAll(vector)
}

// MaxTokensPerHeader bounds how many tokens one X-Geo-Context or
// X-Geo-Session header may list.
const MaxTokensPerHeader = 16

// SplitTokens splits a header value listing tokens separated by commas
// (a client that holds several concurrent ones sends them all; the region
// joins their vectors). Empty items are dropped.
func SplitTokens(header string) []string {
	var out []string
	for _, t := range strings.Split(header, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}
