package gateway

import (
	"github.com/geogate/geogate/conflict"
)

// The tokens' codec lives in conflict (ContextToken, SessionToken), shared
// with the Go client, which merges sessions and compares contexts.

// encodeContext renders a key's causal context as an opaque token bound to
// the key, so a token passed with the wrong key is refused instead of
// silently superseding unrelated versions.
func encodeContext(key string, vv conflict.VV) string { return conflict.ContextToken(key, vv) }

// decodeContext parses an X-Geo-Context token for key. An empty token is no
// context (nil).
func decodeContext(key, token string) (conflict.VV, error) {
	return conflict.ParseContextToken(key, token)
}

// encodeSession renders a session (origin actor -> log sequence the client
// has seen) as an opaque token.
func encodeSession(s conflict.VV) string { return conflict.SessionToken(s) }

// decodeSession parses an X-Geo-Session token; empty is an empty session.
func decodeSession(token string) (conflict.VV, error) { return conflict.ParseSessionToken(token) }
