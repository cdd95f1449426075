package gateway

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"sync/atomic"

	"github.com/geogate/geogate/conflict"
)

// Context and session tokens are authenticated: a token is
//
//	kind(1: 'C' context, 'S' session) keyID(4) [keyHash(8), contexts only]
//	vector(conflict.AppendVV) mac(16)
//
// base64url-encoded, where mac is the first 16 bytes of HMAC-SHA256 under
// the deployment's token key over everything before it and the document
// key (context tokens: binding the token to its key). keyHash, an FNV-1a
// hash of the document key, only lets a token passed with the wrong key be
// told apart from a forged one in the error message. keyID is
// the first 4 bytes of SHA-256 of the signing key, so a token signed with a
// key this region does not hold is refused with a message that says so.
// Every region of a deployment holds the same keys (TokenKeys), so a token
// issued by one region is accepted by every other; one forged or altered
// without the key is refused with 400 bad_context or bad_session. The MAC
// only proves where a token came from: the store still refuses a context
// that names versions the region has not applied (store.ContextAheadError).

// Token kinds, the first byte of a decoded token.
const (
	tokenContext byte = 'C'
	tokenSession byte = 'S'
)

const (
	tokenKeyBytes   = 32
	tokenKeyIDBytes = 4
	tokenMACBytes   = 16
)

var (
	errTokenForged = errors.New("token not issued by this deployment: its signature does not verify (forged, altered, or for another key)")
	errTokenKeyID  = errors.New("token signed with a key this region does not hold (another deployment, or a key retired from security.token_keys_file)")
)

// TokenKeys are the deployment's token keys: the first signs new tokens,
// every one verifies (so a key replaced at the front stays valid for the
// tokens already handed out until it is removed: rotation with a grace
// period). It is immutable.
type TokenKeys struct {
	keys [][]byte
	ids  [][tokenKeyIDBytes]byte
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
		if len(k) != tokenKeyBytes {
			return nil, fmt.Errorf("token key %d is %d bytes, want %d", i+1, len(k), tokenKeyBytes)
		}
		sum := sha256.Sum256(k)
		tk.keys = append(tk.keys, bytes.Clone(k))
		tk.ids = append(tk.ids, [tokenKeyIDBytes]byte(sum[:tokenKeyIDBytes]))
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

// mac computes a token's MAC under key.
func tokenMAC(key []byte, head []byte, docKey string, vector []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(head)
	var n [binary.MaxVarintLen64]byte
	m.Write(n[:binary.PutUvarint(n[:], uint64(len(docKey)))])
	m.Write([]byte(docKey))
	m.Write(vector)
	return m.Sum(nil)[:tokenMACBytes]
}

// errTokenKey reports a context token passed with another key than the one
// it was issued for.
var errTokenKey = errors.New("context token belongs to another key")

func docKeyHash(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()
}

// headLen is the length of a token's head: kind, key ID and, for a
// context, the document key's hash.
func headLen(kind byte) int {
	if kind == tokenContext {
		return 1 + tokenKeyIDBytes + 8
	}
	return 1 + tokenKeyIDBytes
}

// sign encodes a token of kind over vv (bound to docKey for contexts).
func (tk *TokenKeys) sign(kind byte, docKey string, vv conflict.VV) string {
	b := make([]byte, 0, headLen(kind)+16*len(vv)+tokenMACBytes)
	b = append(b, kind)
	b = append(b, tk.ids[0][:]...)
	if kind == tokenContext {
		b = binary.BigEndian.AppendUint64(b, docKeyHash(docKey))
	}
	head := len(b)
	b = conflict.AppendVV(b, vv)
	b = append(b, tokenMAC(tk.keys[0], b[:head], docKey, b[head:])...)
	return conflict.EncodeToken(b)
}

// verify decodes and authenticates a token of kind (bound to docKey for
// contexts) and returns its vector.
func (tk *TokenKeys) verify(kind byte, docKey, token string) (conflict.VV, error) {
	b, err := conflict.DecodeToken(token)
	if err != nil {
		return nil, err
	}
	head := headLen(kind)
	if len(b) < head+tokenMACBytes || b[0] != kind {
		want := "context"
		if kind == tokenSession {
			want = "session"
		}
		return nil, fmt.Errorf("%w: not a %s token", conflict.ErrBadToken, want)
	}
	body, mac := b[:len(b)-tokenMACBytes], b[len(b)-tokenMACBytes:]
	id := [tokenKeyIDBytes]byte(b[1:head])
	key := -1
	for i := range tk.ids {
		if tk.ids[i] == id {
			key = i
			break
		}
	}
	if key < 0 {
		return nil, errTokenKeyID
	}
	if kind == tokenContext && binary.BigEndian.Uint64(b[1+tokenKeyIDBytes:head]) != docKeyHash(docKey) {
		return nil, errTokenKey
	}
	if !hmac.Equal(mac, tokenMAC(tk.keys[key], body[:head], docKey, body[head:])) {
		return nil, errTokenForged
	}
	vv, rest, err := conflict.ReadVV(body[head:])
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", conflict.ErrBadToken)
	}
	return vv, nil
}

// tokens is the node's current TokenKeys, replaced atomically when the key
// file changes.
type tokens struct{ keys atomic.Pointer[TokenKeys] }

func (t *tokens) current() *TokenKeys { return t.keys.Load() }

// encodeContext renders a key's causal context as an opaque token bound to
// the key, so a token passed with the wrong key is refused instead of
// silently superseding unrelated versions.
func (t *tokens) encodeContext(key string, vv conflict.VV) string {
	return t.current().sign(tokenContext, key, vv)
}

// decodeContext parses an X-Geo-Context token for key. An empty token is no
// context (nil).
func (t *tokens) decodeContext(key, token string) (conflict.VV, error) {
	if token == "" {
		return nil, nil
	}
	return t.current().verify(tokenContext, key, token)
}

// encodeSession renders a session (origin actor -> log sequence the client
// has seen) as an opaque token.
func (t *tokens) encodeSession(s conflict.VV) string {
	return t.current().sign(tokenSession, "", s)
}

// decodeSession parses an X-Geo-Session token; empty is an empty session.
func (t *tokens) decodeSession(token string) (conflict.VV, error) {
	if token == "" {
		return conflict.VV{}, nil
	}
	return t.current().verify(tokenSession, "", token)
}
