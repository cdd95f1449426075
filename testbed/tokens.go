package testbed

import (
	"errors"
	"strconv"
	"strings"

	"github.com/geogate/geogate/conflict"
)

// The write answer's tokens are opaque to clients. The testbed is not an
// ordinary client: to tell "superseded" from "lost" it needs the dot of
// every version it wrote. It takes it from the answer's "dot" field when
// the gateway sends one, and otherwise reads it from the tokens, whose
// layout it knows from package gateway (tokens.go):
//
//	context: 'c' | fnv64a(key) big-endian (8 bytes) | conflict.AppendVV(ctx)
//	session: 's' | conflict.AppendVV(session)
//
// A write sent without a session answers a session holding exactly one
// actor, the one that wrote the version; the answer's context holds that
// actor at the new dot's counter (the new version has the highest counter of
// its actor in the record). Run cross-checks every dot recovered this way
// against the final frontiers and conflict logs and reports mismatches.

// errNoDot says a write answer did not yield a dot.
var errNoDot = errors.New("write answer does not name the new version's dot")

// writeDot recovers the dot of the version a write created from its answer.
func writeDot(ans writeAnswer) (conflict.Dot, error) {
	if ans.Dot != "" {
		return parseDot(ans.Dot)
	}
	session, err := decodeTokenVV(ans.Session, 's', 0)
	if err != nil {
		return conflict.Dot{}, err
	}
	if len(session) != 1 {
		return conflict.Dot{}, errNoDot
	}
	var actor string
	for a := range session {
		actor = a
	}
	ctx, err := decodeTokenVV(ans.Context, 'c', 8)
	if err != nil {
		return conflict.Dot{}, err
	}
	if ctx[actor] == 0 {
		return conflict.Dot{}, errNoDot
	}
	return conflict.Dot{Actor: actor, Counter: ctx[actor]}, nil
}

// decodeTokenVV decodes a token of the given kind byte whose vector
// follows skip bytes after the kind.
func decodeTokenVV(token string, kind byte, skip int) (conflict.VV, error) {
	b, err := conflict.DecodeToken(token)
	if err != nil {
		return nil, err
	}
	if len(b) < 1+skip || b[0] != kind {
		return nil, errNoDot
	}
	vv, rest, err := conflict.ReadVV(b[1+skip:])
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errNoDot
	}
	return vv, nil
}

// parseDot parses "actor:counter" (conflict.Dot.String).
func parseDot(s string) (conflict.Dot, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return conflict.Dot{}, errNoDot
	}
	c, err := strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil || c == 0 {
		return conflict.Dot{}, errNoDot
	}
	return conflict.Dot{Actor: s[:i], Counter: c}, nil
}
