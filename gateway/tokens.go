package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/geogate/geogate/conflict"
)

// Context and session tokens are authenticated vectors (the format is
// conflict.SignToken's): every region of a deployment holds the same keys
// (TokenKeys), so a token issued by one region is accepted by every other;
// one forged or altered without a key is refused with 400 bad_context or
// bad_session. A header may list several tokens separated by commas (a
// client holding concurrent ones, which it cannot join itself); the region
// joins their vectors. The MAC only proves where a token came from: the
// store still refuses a context that names versions the region has not
// applied (store.ContextAheadError).

// tokenKeyBytes is the length of a token key.
const tokenKeyBytes = 32

// TokenKeys are the deployment's token keys: the first signs new tokens,
// every one verifies (so a key replaced at the front stays valid for the
// tokens already handed out until it is removed: rotation with a grace
// period). It is immutable.
type TokenKeys struct {
	keys []conflict.TokenKey
	// Insecure is set for the built-in key used when no key file is
	// configured: tokens are then only as secret as this source code.
	Insecure bool
}

// insecureTokenKey is the key of a deployment without
// security.token_keys_file: every region derives the same one, so tokens
// work across regions, but anyone who reads this source can mint them.
var insecureTokenKey = sha256.Sum256([]byte("geogate: no security.token_keys_file configured"))

// NewTokenKeys returns TokenKeys over keys (each 32 bytes; the first signs).
func NewTokenKeys(keys ...[]byte) (*TokenKeys, error) {
	if len(keys) == 0 {
		return nil, errors.New("no token key")
	}
	tk := &TokenKeys{}
	for i, k := range keys {
		key, err := conflict.NewTokenKey(k)
		if err != nil {
			return nil, fmt.Errorf("token key %d: %w", i+1, err)
		}
		tk.keys = append(tk.keys, key)
	}
	return tk, nil
}

// InsecureTokenKeys returns the built-in key of a deployment that
// configures none (see insecureTokenKey).
func InsecureTokenKeys() *TokenKeys {
	tk, _ := NewTokenKeys(insecureTokenKey[:]) //nolint:errcheck // 32 bytes
	tk.Insecure = true
	return tk
}

// GenerateTokenKey returns a fresh random key in the key file's form: 64
// hexadecimal characters.
func GenerateTokenKey() (string, error) {
	b := make([]byte, tokenKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("draw token key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// ParseTokenKeys parses a token key file: one key per line as 64
// hexadecimal characters (32 bytes), the first one signing; blank lines
// and lines starting with '#' are ignored. Errors name the line.
func ParseTokenKeys(data []byte) (*TokenKeys, error) {
	var keys [][]byte
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := hex.DecodeString(line)
		if err != nil || len(k) != tokenKeyBytes {
			return nil, fmt.Errorf("line %d: a token key is %d hexadecimal characters (geogate init writes one; `openssl rand -hex 32` makes another)", i+1, 2*tokenKeyBytes)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in the file: write one key of 64 hexadecimal characters per line, the signing key first")
	}
	return NewTokenKeys(keys...)
}

// LoadTokenKeys reads and parses a token key file (ParseTokenKeys).
func LoadTokenKeys(path string) (*TokenKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("security.token_keys_file: %w", err)
	}
	tk, err := ParseTokenKeys(data)
	if err != nil {
		return nil, fmt.Errorf("security.token_keys_file %s: %w", path, err)
	}
	return tk, nil
}

// tokens is the node's current TokenKeys, replaced atomically when the key
// file changes.
type tokens struct{ keys atomic.Pointer[TokenKeys] }

func (t *tokens) current() *TokenKeys { return t.keys.Load() }

// encodeContext renders a key's causal context as an opaque token bound to
// the key, so a token passed with the wrong key is refused instead of
// silently superseding unrelated versions.
func (t *tokens) encodeContext(key string, vv conflict.VV) string {
	return conflict.SignToken(conflict.TokenContext, t.current().keys[0], key, vv)
}

// decodeContext parses an X-Geo-Context header for key: one token, or
// several separated by commas, whose vectors are joined. An empty header
// is no context (nil).
func (t *tokens) decodeContext(key, header string) (conflict.VV, error) {
	if header == "" {
		return nil, nil
	}
	return t.verifyAll(conflict.TokenContext, key, header)
}

// encodeSession renders a session (origin actor -> log sequence the client
// has seen) as an opaque token.
func (t *tokens) encodeSession(s conflict.VV) string {
	return conflict.SignToken(conflict.TokenSession, t.current().keys[0], "", s)
}

// decodeSession parses an X-Geo-Session header (one token or several,
// joined); empty is an empty session.
func (t *tokens) decodeSession(header string) (conflict.VV, error) {
	if header == "" {
		return conflict.VV{}, nil
	}
	return t.verifyAll(conflict.TokenSession, "", header)
}

// verifyAll verifies every token a header lists and joins their vectors.
func (t *tokens) verifyAll(kind byte, key, header string) (conflict.VV, error) {
	list := conflict.SplitTokens(header)
	if len(list) == 0 {
		return nil, fmt.Errorf("%w: no token in the header", conflict.ErrBadToken)
	}
	if len(list) > conflict.MaxTokensPerHeader {
		return nil, fmt.Errorf("%w: %d tokens, at most %d", conflict.ErrBadToken, len(list), conflict.MaxTokensPerHeader)
	}
	keys := t.current().keys
	var out conflict.VV
	for _, tok := range list {
		vv, err := conflict.VerifyToken(kind, keys, key, tok)
		if err != nil {
			return nil, err
		}
		out = out.Merge(vv)
	}
	return out, nil
}
