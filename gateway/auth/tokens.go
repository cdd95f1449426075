// Package auth decides who may call a region's HTTP API: bearer tokens
// read from a tokens file (name, role, SHA-256 of the secret, optional key
// prefixes), the roles reader < writer < admin and the role each request
// needs, and the HTTP middleware that answers 401 and 403 and counts every
// refusal in geogate_auth_failures_total{reason}.
//
// A token's secret is 256 random bits; the file holds only its SHA-256, so
// a leaked tokens file does not leak the tokens. A presented token is
// hashed and compared with every hash in constant time.
package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Role is what a token may do. Each role includes the ones below it.
type Role int

// The roles, weakest first.
const (
	// Reader may read: GET and HEAD of keys, the key list, status,
	// conflicts, the change feed and metrics.
	Reader Role = iota + 1
	// Writer may do what Reader may, and PUT and DELETE keys.
	Writer
	// Admin may do everything, /v1/admin/... included.
	Admin
)

// String returns the role's name as the tokens file writes it.
func (r Role) String() string {
	switch r {
	case Reader:
		return "reader"
	case Writer:
		return "writer"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole reads a role name: reader, writer or admin.
func ParseRole(s string) (Role, error) {
	switch s {
	case "reader":
		return Reader, nil
	case "writer":
		return Writer, nil
	case "admin":
		return Admin, nil
	}
	return 0, fmt.Errorf("role %q is not one of reader, writer, admin", s)
}

// Token is one accepted bearer token, as the tokens file lists it.
type Token struct {
	// Name identifies the token in logs (never the secret).
	Name string
	// Role is what it may do.
	Role Role
	// Hash is the SHA-256 of the secret.
	Hash [sha256.Size]byte
	// Prefixes, if not empty, are the only key prefixes the token may
	// touch (keys, key lists, the change feed and the conflict log of a
	// key).
	Prefixes []string
}

// Allows reports whether the token may touch key.
func (t Token) Allows(key string) bool {
	if len(t.Prefixes) == 0 {
		return true
	}
	for _, p := range t.Prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// SecretPrefix starts every secret NewSecret makes, so that a geogate token
// is recognisable (secret scanners, logs).
const SecretPrefix = "ggt_"

// NewSecret returns a fresh token secret: SecretPrefix and 256 bits from
// crypto/rand, base64url without padding.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashSecret returns the SHA-256 of a secret, hex-encoded, as the tokens
// file stores it.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Set is a set of tokens, looked up by secret.
type Set struct{ tokens []Token }

// NewSet returns a set of the tokens (copied).
func NewSet(tokens []Token) *Set { return &Set{tokens: append([]Token(nil), tokens...)} }

// Len returns the number of tokens.
func (s *Set) Len() int { return len(s.tokens) }

// Lookup returns the token whose hash is the secret's SHA-256. It hashes
// the secret once and compares the hash with every token's in constant
// time, so its duration does not depend on which token matches, or how
// much of a hash does.
func (s *Set) Lookup(secret string) (Token, bool) {
	h := sha256.Sum256([]byte(secret))
	found := -1
	for i := range s.tokens {
		if subtle.ConstantTimeCompare(h[:], s.tokens[i].Hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Token{}, false
	}
	return s.tokens[found], true
}

// fileEntry is one token as the tokens file writes it.
type fileEntry struct {
	Name     string   `yaml:"name"`
	Role     string   `yaml:"role"`
	SHA256   string   `yaml:"sha256"`
	Prefixes []string `yaml:"prefixes,omitempty"`
}

// ParseTokens reads a tokens file:
//
//	tokens:
//	  - name: app
//	    role: writer                # reader | writer | admin
//	    sha256: 9f86d0...           # SHA-256 of the secret, 64 hex digits
//	    prefixes: ["user/"]         # optional
//
// It refuses, naming the entry, unknown fields, a missing or repeated
// name, an unknown role, a hash that is not 64 hex digits, a repeated
// hash, and an empty prefix. A file with no tokens is an error too: it
// would refuse every request, which a half-written file would also cause.
func ParseTokens(b []byte) ([]Token, error) {
	var doc struct {
		Tokens []fileEntry `yaml:"tokens"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	if len(doc.Tokens) == 0 {
		return nil, errors.New("tokens file: no tokens (a list under \"tokens:\")")
	}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{}
	out := make([]Token, 0, len(doc.Tokens))
	for i, e := range doc.Tokens {
		where := fmt.Sprintf("tokens[%d]", i)
		if e.Name != "" {
			where += fmt.Sprintf(" (%s)", e.Name)
		}
		if e.Name == "" {
			return nil, fmt.Errorf("tokens file: %s: name is required", where)
		}
		if names[e.Name] {
			return nil, fmt.Errorf("tokens file: %s: name %q is used twice", where, e.Name)
		}
		names[e.Name] = true
		role, err := ParseRole(e.Role)
		if err != nil {
			return nil, fmt.Errorf("tokens file: %s: %w", where, err)
		}
		raw, err := hex.DecodeString(e.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("tokens file: %s: sha256 must be 64 hex digits (the SHA-256 of the secret), got %q", where, e.SHA256)
		}
		t := Token{Name: e.Name, Role: role, Prefixes: e.Prefixes}
		copy(t.Hash[:], raw)
		if other, dup := hashes[t.Hash]; dup {
			return nil, fmt.Errorf("tokens file: %s: same secret as %q", where, other)
		}
		hashes[t.Hash] = e.Name
		for _, p := range e.Prefixes {
			if p == "" {
				return nil, fmt.Errorf("tokens file: %s: an empty prefix allows every key; leave prefixes out instead", where)
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// FormatTokens renders tokens as a commented tokens file that ParseTokens
// reads back.
func FormatTokens(tokens []Token) []byte {
	var b strings.Builder
	b.WriteString(`# geogate bearer tokens: who may call this region's HTTP API (auth.tokens_file).
#
# Each entry: name (shown in logs), role (reader | writer | admin), the
# SHA-256 of the secret (hex; the secret itself is not stored here), and
# optionally the key prefixes the token may touch. A client sends
# "Authorization: Bearer <secret>".
#
# The file is read again within seconds of a change: delete an entry to
# revoke its token. Add one with
#   secret="ggt_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
#   printf %s "$secret" | sha256sum
# and copy the same file to every node.
tokens:
`)
	for _, t := range tokens {
		fmt.Fprintf(&b, "  - name: %s\n    role: %s\n    sha256: %s\n", quote(t.Name), t.Role, hex.EncodeToString(t.Hash[:]))
		if len(t.Prefixes) > 0 {
			q := make([]string, len(t.Prefixes))
			for i, p := range t.Prefixes {
				q[i] = quote(p)
			}
			fmt.Fprintf(&b, "    prefixes: [%s]\n", strings.Join(q, ", "))
		}
	}
	return []byte(b.String())
}

// quote writes s as a YAML scalar that reads back as s.
func quote(s string) string {
	var n yaml.Node
	if err := n.Encode(s); err != nil {
		return fmt.Sprintf("%q", s)
	}
	out, err := yaml.Marshal(&n)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	return strings.TrimSpace(string(out))
}

// NewToken makes a token of the role with a fresh secret, returning both
// (the secret is not kept in the Token).
func NewToken(name string, role Role, prefixes ...string) (Token, string, error) {
	secret, err := NewSecret()
	if err != nil {
		return Token{}, "", err
	}
	return Token{Name: name, Role: role, Hash: sha256.Sum256([]byte(secret)), Prefixes: prefixes}, secret, nil
}
