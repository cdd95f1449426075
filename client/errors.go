package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Errors the client itself reports (test with errors.Is).
var (
	// ErrOutcomeUnknown: a write may have reached an endpoint, but no answer
	// came back (the connection broke, the attempt timed out, or the call's
	// context ended while it was in flight: the error then wraps the
	// context's error too). The write may or may not have been applied, so
	// the client did not retry it elsewhere (see WithRetryUnknownWrites).
	// Read the key to find out.
	ErrOutcomeUnknown = errors.New("write outcome unknown")
	// ErrBehind: every endpoint tried showed an older state of the key than
	// this client had already read or written, or refused the read as
	// behind the client's session (503 stale: every answer's session
	// covers what it showed, so reads are monotonic), until the attempts
	// ran out. The client then forgets the key's context and its session,
	// so the next read takes what the regions have.
	ErrBehind = errors.New("endpoint is behind what this client has seen of the key")
	// ErrSiblings: Value.Decode of a read that left concurrent values
	// unresolved.
	ErrSiblings = errors.New("the key has unresolved siblings")
	// ErrTooManyRedirects: more 307 redirects than WithRedirectLimit allows.
	ErrTooManyRedirects = errors.New("too many redirects")
	// ErrInsecureRedirect: a redirect from https to http, which the client
	// refuses to follow (it would send the token and the value in clear).
	ErrInsecureRedirect = errors.New("refusing a redirect from https to http")
	// ErrFeedChanged: a change feed answered with another change log than
	// the positions of the watch belong to (header X-Geo-Feed): another
	// region, or the region's store was replaced. Positions do not carry
	// over; re-read the keys followed, then watch again from now.
	ErrFeedChanged = errors.New("the change feed is another region's or was replaced")
)

// The code words of the HTTP API's error answers.
const (
	CodeBadJSON             = "bad_json"
	CodeBadBody             = "bad_body"
	CodeBadKey              = "bad_key"
	CodeBadContext          = "bad_context"
	CodeBadSession          = "bad_session"
	CodeBadHome             = "bad_home"
	CodeBadWait             = "bad_wait"
	CodeBadLimit            = "bad_limit"
	CodeBadForward          = "bad_forward"
	CodeTooLarge            = "too_large"
	CodeNotFound            = "not_found"
	CodeNoLink              = "no_link"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeRedirect            = "redirect"
	CodeWrongRegion         = "wrong_region"
	CodeHomeUnreachable     = "home_unreachable"
	CodeStale               = "stale"
	CodeStaleContext        = "stale_context"
	CodeClockSkew           = "clock_skew"
	CodeShuttingDown        = "shutting_down"
	CodeInsufficientStorage = "insufficient_storage"
	CodeUnauthenticated     = "unauthenticated"
	CodeForbidden           = "forbidden"
	CodeRuleError           = "rule_error"
	CodeInternal            = "internal"
	CodeBadPosition         = "bad_position"
	CodeBadPrefix           = "bad_prefix"
	CodePositionGone        = "position_gone"
	CodePositionAhead       = "position_ahead"
	CodeSlowConsumer        = "slow_consumer"
	CodeStorageFailed       = "storage_failed"
	CodeCorruptRecord       = "corrupt_record"
	CodeNoLeader            = "no_leader"
	CodeNotLeader           = "not_leader"
	CodeNodeSeeding         = "node_seeding"
	CodeOutcomeUnknown      = "outcome_unknown"
)

// APIError is an error answer of the HTTP API: {"error": ..., "code": ...}
// with its status. An answer whose code this client does not know comes
// back as an *APIError; each known code comes back as its own type, which
// embeds APIError:
//
//	var nf *client.NotFoundError
//	if errors.As(err, &nf) { ... }
//
// errors.As with an **APIError target matches every one of them, so
//
//	var ae *client.APIError
//	if errors.As(err, &ae) { log(ae.Status, ae.Code) }
//
// handles any answer.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the answer's code word ("" if the body was not the API's
	// JSON, e.g. a proxy's page).
	Code string
	// Message is the answer's error text.
	Message string
	// Endpoint is the base URL that answered (a redirect's target
	// included).
	Endpoint string
	// Body is the whole answer body, for fields this client does not know.
	Body json.RawMessage
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = strings.ToLower(http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s (%d %s from %s)", e.Message, e.Status, code, e.Endpoint)
}

// As lets errors.As find the *APIError inside every typed error.
func (e *APIError) As(target any) bool {
	if p, ok := target.(**APIError); ok {
		*p = e
		return true
	}
	return false
}

// Errors by code. Each is an *APIError with a type of its own; those whose
// answers carry more fields decode them.
type (
	// BadJSONError (400 bad_json): the body is not one JSON document.
	BadJSONError struct{ APIError }
	// BadBodyError (400 bad_body): the body could not be read.
	BadBodyError struct{ APIError }
	// BadKeyError (400 bad_key): empty, over 1024 bytes, not UTF-8, or with
	// a control character.
	BadKeyError struct{ APIError }
	// BadContextError (400 bad_context): the causal context token is
	// malformed or belongs to another key. The client forgets the key's
	// context when it gets one, so the next write goes without.
	BadContextError struct{ APIError }
	// BadSessionError (400 bad_session): the session token is malformed.
	BadSessionError struct{ APIError }
	// BadHomeError (400 bad_home): the home_region rule could not place the
	// key.
	BadHomeError struct{ APIError }
	// BadWaitError (400 bad_wait): X-Geo-Wait is not a number of
	// milliseconds.
	BadWaitError struct{ APIError }
	// BadLimitError (400 bad_limit): a limit outside 1 to 10000.
	BadLimitError struct{ APIError }
	// BadForwardError (400 bad_forward): a region could not read a write
	// forwarded to it.
	BadForwardError struct{ APIError }
	// TooLargeError (413 too_large): the value is over http.max_value_bytes.
	TooLargeError struct{ APIError }
	// NotFoundError (404 not_found): no such key (or it is deleted), route
	// or admin action.
	NotFoundError struct{ APIError }
	// NoLinkError (404 no_link): the region has no link from that peer.
	NoLinkError struct{ APIError }
	// MethodNotAllowedError (405 method_not_allowed).
	MethodNotAllowedError struct {
		APIError
		// Allow lists the methods the path takes.
		Allow []string
	}
	// RedirectError (307 redirect): the key's home region takes its writes;
	// returned only when redirects are not followed (WithRedirectLimit).
	RedirectError struct {
		APIError
		Home string
		// URL is where to repeat the request.
		URL string
	}
	// WrongRegionError (421 wrong_region): the key's home_region rule
	// rejects writes elsewhere; write at Home.
	WrongRegionError struct {
		APIError
		Home string
		URL  string
	}
	// HomeUnreachableError (503 home_unreachable): the key's home region
	// could not be reached and its rule's fallback is reject. Retried. The
	// home may have applied the write after a forwarding timeout, so a
	// retry can add a second version (never lose one).
	HomeUnreachableError struct {
		APIError
		Home string
	}
	// StaleError (503 stale): the region did not apply what the session
	// names within the wait. Retried.
	StaleError struct {
		APIError
		// Missing is, per origin actor, the position the session wants and
		// the one the region applied.
		Missing map[string]StaleActor
	}
	// StaleContextError (503 stale_context): the region has not applied
	// what the write's causal context names. Retried.
	StaleContextError struct{ APIError }
	// ClockSkewError (503 clock_skew): the region refused the write because
	// of its clock. Retried.
	ClockSkewError struct{ APIError }
	// ShuttingDownError (503 shutting_down): the region is stopping.
	// Retried.
	ShuttingDownError struct{ APIError }
	// InsufficientStorageError (507 insufficient_storage): the region's
	// disk is too full to take writes. Retried.
	InsufficientStorageError struct{ APIError }
	// UnauthenticatedError (401 unauthenticated): no bearer token, or an
	// unknown one (WithToken).
	UnauthenticatedError struct{ APIError }
	// ForbiddenError (403 forbidden): the token's role does not allow the
	// request.
	ForbiddenError struct{ APIError }
	// RuleError (500 rule_error): no rule governs the key.
	RuleError struct{ APIError }
	// InternalError (500 internal).
	InternalError struct{ APIError }
	// BadPositionError (400 bad_position): a change feed's Last-Event-ID or
	// after is not a position.
	BadPositionError struct{ APIError }
	// BadPrefixError (400 bad_prefix): a change feed's prefix is not a
	// valid key prefix.
	BadPrefixError struct{ APIError }
	// PositionGoneError (change feed, error event position_gone): the
	// position a watch resumes after is older than the region's change log
	// keeps (watch.retention). Changes were missed: re-read the keys
	// followed, then watch again from now.
	PositionGoneError struct {
		APIError
		// After is the position asked for; Oldest the oldest one kept.
		After, Oldest uint64
	}
	// PositionAheadError (change feed, error event position_ahead): the
	// position is not one of the region's change log (another region's,
	// or from before the region's store was replaced).
	PositionAheadError struct {
		APIError
		After, Newest uint64
	}
	// SlowConsumerError (change feed, error event slow_consumer): the
	// stream fell more than watch.max_lag changes behind. Client.Watch
	// reconnects by itself from where it was.
	SlowConsumerError struct{ APIError }
	// StorageFailedError (503 storage_failed): the region's storage met an
	// I/O error and it refuses requests until restarted on a repaired
	// disk. Retried at the other endpoints.
	StorageFailedError struct{ APIError }
	// CorruptRecordError (503 corrupt_record): the key's stored record
	// fails its checksum and is being repaired from a peer. Retried.
	CorruptRecordError struct{ APIError }
	// NoLeaderError (503 no_leader): the region's nodes are electing a
	// leader (a region of several nodes). Nothing was applied. Retried.
	NoLeaderError struct{ APIError }
	// NotLeaderError (503 not_leader): the node stopped leading as the
	// request arrived. Nothing was applied. Retried.
	NotLeaderError struct{ APIError }
	// NodeSeedingError (503 node_seeding): the node is loading a copy of
	// its leader's store. Retried.
	NodeSeedingError struct{ APIError }
	// OutcomeUnknownError (503 outcome_unknown): the region's leader did
	// not confirm the write in time; it may or may not have been taken.
	// Reads are retried; writes only under WithRetryUnknownWrites (a
	// write with its causal context is safe to repeat). Also matches
	// ErrOutcomeUnknown.
	OutcomeUnknownError struct{ APIError }
)

// Is makes errors.Is(err, ErrOutcomeUnknown) hold for an outcome_unknown
// answer.
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

// StaleActor is one origin a stale read's region lags on.
type StaleActor struct {
	Want    uint64 `json:"want"`
	Applied uint64 `json:"applied"`
}

// newAnswerError builds the typed error of an error answer.
func newAnswerError(status int, header http.Header, body []byte, endpoint string) error {
	var b struct {
		Error   string                `json:"error"`
		Code    string                `json:"code"`
		Home    string                `json:"home"`
		URL     string                `json:"url"`
		Missing map[string]StaleActor `json:"missing"`
		After   uint64                `json:"after"`
		Oldest  uint64                `json:"oldest"`
		Newest  uint64                `json:"newest"`
	}
	a := APIError{Status: status, Endpoint: endpoint}
	if json.Unmarshal(body, &b) == nil {
		a.Code, a.Message = b.Code, b.Error
		a.Body = json.RawMessage(body)
	}
	if a.Message == "" {
		a.Message = strings.TrimSpace(string(body))
		if len(a.Message) > 200 {
			a.Message = a.Message[:200] + "..."
		}
		if a.Message == "" {
			a.Message = http.StatusText(status)
		}
	}
	switch a.Code {
	case CodeBadJSON:
		return &BadJSONError{a}
	case CodeBadBody:
		return &BadBodyError{a}
	case CodeBadKey:
		return &BadKeyError{a}
	case CodeBadContext:
		return &BadContextError{a}
	case CodeBadSession:
		return &BadSessionError{a}
	case CodeBadHome:
		return &BadHomeError{a}
	case CodeBadWait:
		return &BadWaitError{a}
	case CodeBadLimit:
		return &BadLimitError{a}
	case CodeBadForward:
		return &BadForwardError{a}
	case CodeTooLarge:
		return &TooLargeError{a}
	case CodeNotFound:
		return &NotFoundError{a}
	case CodeNoLink:
		return &NoLinkError{a}
	case CodeMethodNotAllowed:
		var allow []string
		for _, m := range strings.Split(header.Get("Allow"), ",") {
			if m = strings.TrimSpace(m); m != "" {
				allow = append(allow, m)
			}
		}
		return &MethodNotAllowedError{a, allow}
	case CodeRedirect:
		u := b.URL
		if u == "" {
			u = header.Get("Location")
		}
		return &RedirectError{a, b.Home, u}
	case CodeWrongRegion:
		return &WrongRegionError{a, b.Home, b.URL}
	case CodeHomeUnreachable:
		return &HomeUnreachableError{a, b.Home}
	case CodeStale:
		return &StaleError{a, b.Missing}
	case CodeStaleContext:
		return &StaleContextError{a}
	case CodeClockSkew:
		return &ClockSkewError{a}
	case CodeShuttingDown:
		return &ShuttingDownError{a}
	case CodeInsufficientStorage:
		return &InsufficientStorageError{a}
	case CodeUnauthenticated:
		return &UnauthenticatedError{a}
	case CodeForbidden:
		return &ForbiddenError{a}
	case CodeRuleError:
		return &RuleError{a}
	case CodeInternal:
		return &InternalError{a}
	case CodeBadPosition:
		return &BadPositionError{a}
	case CodeBadPrefix:
		return &BadPrefixError{a}
	case CodePositionGone:
		return &PositionGoneError{a, b.After, b.Oldest}
	case CodePositionAhead:
		return &PositionAheadError{a, b.After, b.Newest}
	case CodeSlowConsumer:
		return &SlowConsumerError{a}
	case CodeStorageFailed:
		return &StorageFailedError{a}
	case CodeCorruptRecord:
		return &CorruptRecordError{a}
	case CodeNoLeader:
		return &NoLeaderError{a}
	case CodeNotLeader:
		return &NotLeaderError{a}
	case CodeNodeSeeding:
		return &NodeSeedingError{a}
	case CodeOutcomeUnknown:
		return &OutcomeUnknownError{a}
	}
	return &a
}

// IsNotFound reports whether err is a 404 not_found answer: the key does
// not exist or is deleted.
func IsNotFound(err error) bool {
	var nf *NotFoundError
	return errors.As(err, &nf)
}
