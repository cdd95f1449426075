package conflict

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
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
// returns it with the remaining bytes.
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
		if k <= 0 {
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

// The HTTP API's two tokens, built on the codec above. The first byte names
// the kind, so one kind is never taken for the other.
const (
	tokenContext byte = 'c'
	tokenSession byte = 's'
)

// ErrTokenKey is returned for a context token passed with another key than
// the one it was issued for.
var ErrTokenKey = errors.New("context token belongs to another key")

// tokenKeyHash binds a context token to its key (FNV-1a, 64 bits): enough
// to catch a token passed with the wrong key, not a security measure.
func tokenKeyHash(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()
}

// ContextToken renders a key's causal context as the opaque X-Geo-Context
// token, bound to the key. Equal vectors of one key give equal tokens.
func ContextToken(key string, vv VV) string {
	b := []byte{tokenContext}
	b = binary.BigEndian.AppendUint64(b, tokenKeyHash(key))
	return EncodeToken(AppendVV(b, vv))
}

// ParseContextToken reverses ContextToken for key: ErrTokenKey if the token
// was issued for another key, ErrBadToken if it is malformed. An empty
// token is no context (nil, nil).
func ParseContextToken(key, token string) (VV, error) {
	if token == "" {
		return nil, nil
	}
	b, err := DecodeToken(token)
	if err != nil {
		return nil, err
	}
	if len(b) < 9 || b[0] != tokenContext {
		return nil, fmt.Errorf("%w: not a context token", ErrBadToken)
	}
	if binary.BigEndian.Uint64(b[1:9]) != tokenKeyHash(key) {
		return nil, ErrTokenKey
	}
	return readAll(b[9:])
}

// SessionToken renders a session (origin actor -> the highest position of
// its log the client has seen) as the opaque X-Geo-Session token.
func SessionToken(s VV) string {
	return EncodeToken(AppendVV([]byte{tokenSession}, s))
}

// ParseSessionToken reverses SessionToken; an empty token is an empty
// session.
func ParseSessionToken(token string) (VV, error) {
	if token == "" {
		return VV{}, nil
	}
	b, err := DecodeToken(token)
	if err != nil {
		return nil, err
	}
	if len(b) < 1 || b[0] != tokenSession {
		return nil, fmt.Errorf("%w: not a session token", ErrBadToken)
	}
	return readAll(b[1:])
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
