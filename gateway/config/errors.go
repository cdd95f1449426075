package config

import (
	"fmt"
	"strconv"
)

// FieldError is one invalid setting: the key it concerns and why. Validate
// and Load return these (several joined with errors.Join); use errors.As to
// reach the key.
type FieldError struct {
	// Key is the flattened key path, e.g. "topology.hub", "rules[2].home"
	// or "regions.eu-west.nats".
	Key string
	// Reason says what is wrong, in words an operator can act on.
	Reason string
	// At locates the problem in the file it was written in, when known
	// (FILE:LINE:COLUMN, as `geogate rules lint` shows it; rule
	// problems).
	At string
}

// Error reads "config: <key>: <reason>", with "; at <at>" when located:
// one line per problem.
func (e *FieldError) Error() string {
	if e.At == "" {
		return "config: " + e.Key + ": " + e.Reason
	}
	return "config: " + e.Key + ": " + e.Reason + "; at " + e.At
}

// UnknownKeyError is a key that is not part of the configuration schema,
// usually a typo. Load refuses it rather than ignoring it.
type UnknownKeyError struct {
	// Key is the flattened key path as written, e.g. "htp.listen" or
	// "rules[0].stratgy".
	Key string
	// Source says where the key came from: "FILE:LINE", "environment
	// GEOGATE_...", or "flag --set ...".
	Source string
	// Suggestion is the closest known key, or "".
	Suggestion string
}

// Error reads `config: unknown key "<key>" in <source> (did you mean "<suggestion>"?)`.
func (e *UnknownKeyError) Error() string {
	msg := "config: unknown key " + strconv.Quote(e.Key)
	if e.Source != "" {
		msg += " in " + e.Source
	}
	if e.Suggestion != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", e.Suggestion)
	}
	return msg
}

// fieldErrorf builds a *FieldError with a formatted reason.
func fieldErrorf(key, format string, args ...any) error {
	return &FieldError{Key: key, Reason: fmt.Sprintf(format, args...)}
}
