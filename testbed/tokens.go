package testbed

import (
	"errors"
	"strconv"
	"strings"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/conflict"
)

// To tell "superseded" from "lost", the testbed tracks the dot of every
// version it wrote: the write answer names it ("dot": "actor:counter").

// errNoDot says a write answer did not yield a dot.
var errNoDot = errors.New("write answer does not name the new version's dot")

// writeDot returns the dot of the version a write created, from the
// answer's "dot" field.
func writeDot(ans client.WriteResult) (conflict.Dot, error) {
	if ans.Dot == "" {
		return conflict.Dot{}, errNoDot
	}
	return parseDot(ans.Dot)
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
