package rules

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/expr-lang/expr/file"
)

// Sentinel errors. Errors returned by this package wrap one of these (check
// with errors.Is) or are a *CompileError / *EvalError.
var (
	// ErrNoRule: no rule's match holds for the key. A rule set whose last
	// rule matches 'true' never returns it.
	ErrNoRule = errors.New("no rule matches key")
	// ErrNoHome: the rule has no home expression (Rule.Home on a rule
	// that is neither home_region nor custom with home).
	ErrNoHome = errors.New("rule has no home expression")
	// ErrBadHome: a home expression yielded something other than the
	// name of a region of the deployment.
	ErrBadHome = errors.New("home is not a region")
	// ErrEval: an expression failed at run time (see EvalError).
	ErrEval = errors.New("rule expression failed")
	// ErrNoRules: a rule file has no rules: key (missing, or misspelt).
	// It is never read as "no rules, so every key lww".
	ErrNoRules = errors.New("no rules: key")
	// ErrTooLarge: the input handed to an expression, or its result,
	// exceeds Options.MaxInputBytes / Options.MaxResultBytes.
	ErrTooLarge = errors.New("rule input or result too large")
)

// CompileError is one problem found while compiling a rule: the rule (by
// position and name), the field (config key, e.g. "on_read"; empty for the
// rule as a whole) and the cause. For an expression error the cause is a
// *file.Error whose Line and Column locate the problem inside the
// expression and whose message carries a caret snippet.
type CompileError struct {
	Index int    // position of the rule in the list, from 0
	Rule  string // the rule's name (may be empty when the name is missing)
	Field string // config key of the offending field, "" for the whole rule
	Err   error
}

// Error renders `rule "carts" (#2): on_read: <cause>`.
func (e *CompileError) Error() string {
	if e.Index < 0 {
		return e.Err.Error()
	}
	where := fmt.Sprintf("rule %q (#%d)", e.Rule, e.Index+1)
	if e.Field == "" {
		return fmt.Sprintf("%s: %v", where, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", where, e.Field, e.Err)
}

// Unwrap returns the cause.
func (e *CompileError) Unwrap() error { return e.Err }

// ExprError returns the expression-level error (with Line, Column and
// Snippet) when the cause is one, else nil.
func (e *CompileError) ExprError() *file.Error {
	var fe *file.Error
	if errors.As(e.Err, &fe) {
		return fe
	}
	return nil
}

// EvalError is a run-time failure of one rule expression: a type error,
// an index out of range, the memory budget, a result that is not JSON, a
// recovered panic. errors.Is(err, ErrEval) holds for it.
type EvalError struct {
	Rule  string // rule name
	Field string // "match", "home", "select", "merge" or "on_read"
	Key   string
	Err   error
}

// Error renders `rule "carts": on_read: key "cart/1": <cause>`.
func (e *EvalError) Error() string {
	return fmt.Sprintf("rule %q: %s: key %q: %v", e.Rule, e.Field, e.Key, e.Err)
}

// Unwrap returns the cause.
func (e *EvalError) Unwrap() error { return e.Err }

// Is reports ErrEval so callers can count evaluation failures.
func (e *EvalError) Is(target error) bool { return target == ErrEval }

// Kind classifies the failure for logs that report each kind once: the
// field and the innermost cause's message with every run of digits
// written as N (indexes, lengths, counters), without the key, the version
// or the values, so that one broken expression failing on many keys is
// one kind. An expression error contributes its message without the
// snippet.
func (e *EvalError) Kind() string {
	cause := e.Err
	for {
		var fe *file.Error
		if errors.As(cause, &fe) && fe == cause {
			return e.Field + ": " + elideDigits(fe.Message)
		}
		next := errors.Unwrap(cause)
		if next == nil {
			break
		}
		cause = next
	}
	msg := "unknown failure"
	if cause != nil {
		msg = cause.Error()
	}
	return e.Field + ": " + elideDigits(msg)
}

// elideDigits writes each run of digits as N and cuts s to 120 bytes.
func elideDigits(s string) string {
	var b strings.Builder
	digits := false
	for _, r := range s {
		if unicode.IsDigit(r) {
			if !digits {
				b.WriteByte('N')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(r)
	}
	out := b.String()
	if len(out) > 120 {
		out = out[:120]
	}
	return out
}
