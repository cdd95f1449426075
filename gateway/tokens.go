package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/geogate/geogate/conflict"
)

// Token kinds, the first byte of a decoded token.
const (
	tokenContext byte = 'c'
	tokenSession byte = 's'
)

var errTokenKey = errors.New("context token belongs to another key")

func keyHash(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()
}

// encodeContext renders a key's causal context as an opaque token bound to
// the key, so a token passed with the wrong key is refused instead of
// silently superseding unrelated versions.
func encodeContext(key string, vv conflict.VV) string {
	b := []byte{tokenContext}
	b = binary.BigEndian.AppendUint64(b, keyHash(key))
	return conflict.EncodeToken(conflict.AppendVV(b, vv))
}

// decodeContext parses an X-Geo-Context token for key. An empty token is no
// context (nil).
func decodeContext(key, token string) (conflict.VV, error) {
	if token == "" {
		return nil, nil
	}
	b, err := conflict.DecodeToken(token)
	if err != nil {
		return nil, err
	}
	if len(b) < 9 || b[0] != tokenContext {
		return nil, fmt.Errorf("%w: not a context token", conflict.ErrBadToken)
	}
	if binary.BigEndian.Uint64(b[1:9]) != keyHash(key) {
		return nil, errTokenKey
	}
	vv, rest, err := conflict.ReadVV(b[9:])
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", conflict.ErrBadToken)
	}
	return vv, nil
}

// encodeSession renders a session (origin actor -> log sequence the client
// has seen) as an opaque token.
func encodeSession(s conflict.VV) string {
	return conflict.EncodeToken(conflict.AppendVV([]byte{tokenSession}, s))
}

// decodeSession parses an X-Geo-Session token; empty is an empty session.
func decodeSession(token string) (conflict.VV, error) {
	if token == "" {
		return conflict.VV{}, nil
	}
	b, err := conflict.DecodeToken(token)
	if err != nil {
		return nil, err
	}
	if len(b) < 1 || b[0] != tokenSession {
		return nil, fmt.Errorf("%w: not a session token", conflict.ErrBadToken)
	}
	vv, rest, err := conflict.ReadVV(b[1:])
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", conflict.ErrBadToken)
	}
	return vv, nil
}
