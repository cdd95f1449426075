package conflict

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
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
