package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/store"
)

// MaxKeyBytes is the longest key accepted.
const MaxKeyBytes = 1024

// Header names of the HTTP API.
const (
	HeaderContext = "X-Geo-Context"
	HeaderSession = "X-Geo-Session"
	HeaderWait    = "X-Geo-Wait"
	HeaderRule    = "X-Geo-Rule"
)

// apiError is an error with the HTTP status and code word it answers with.
type apiError struct {
	status  int
	code    string
	msg     string
	details map[string]any
	// retryAfter, when positive, is sent as Retry-After (seconds).
	retryAfter int
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v) //nolint:errcheck // the client went away; nothing to do
}

func writeError(w http.ResponseWriter, err error) {
	status, body := errorBody(err)
	if s := retryAfter(err); s > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(s))
	}
	writeJSON(w, status, body)
}

// retryAfter is the Retry-After an error's answer carries (0: none): a
// region of several nodes between leaders is one again in seconds.
func retryAfter(err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.retryAfter
	case errors.Is(err, store.ErrNotLeader), errors.Is(err, store.ErrLogUnknown), errors.Is(err, store.ErrCopying),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return 1
	}
	return 0
}

// errorBody renders an error as its HTTP status and JSON body
// {"error", "code", details...}: an *apiError as it says; the store's
// refusals as what they mean to a client (closing: 503 shutting_down; low
// disk space: 507 insufficient_storage; failed storage: 503
// storage_failed; an impossible context: 400 bad_context; a context ahead
// of this region: 503 stale_context; a request cut short by its context:
// 503 outcome_unknown), each retryable elsewhere or later; anything else
// as a 500.
func errorBody(err error) (int, map[string]any) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, store.ErrClosed):
		ae = &apiError{status: http.StatusServiceUnavailable, code: "shutting_down", msg: "this region is shutting down; retry at another region"}
	case errors.Is(err, store.ErrInsufficientStorage):
		ae = &apiError{status: http.StatusInsufficientStorage, code: "insufficient_storage", msg: err.Error() + "; retry at another region, or here once space is freed"}
	case errors.Is(err, store.ErrStorageFailed):
		ae = &apiError{status: http.StatusServiceUnavailable, code: "storage_failed", msg: err.Error() + "; retry at another region"}
	case errors.Is(err, store.ErrTooLarge):
		ae = &apiError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: err.Error()}
	case errors.Is(err, store.ErrBadContext):
		ae = &apiError{status: http.StatusBadRequest, code: "bad_context", msg: err.Error()}
	case errors.Is(err, store.ErrObserving):
		ae = &apiError{status: http.StatusServiceUnavailable, code: "conflicts_pending", msg: err.Error() + "; retry in a moment"}
	case errors.Is(err, store.ErrChecksum):
		ae = &apiError{status: http.StatusServiceUnavailable, code: "corrupt_record", msg: err.Error() + "; this region is repairing it from a peer: retry, or read at another region"}
	case errors.Is(err, store.ErrContextAhead):
		ae = &apiError{status: http.StatusServiceUnavailable, code: "stale_context", msg: err.Error() + "; retry"}
	case errors.Is(err, store.ErrNotLeader):
		ae = &apiError{status: http.StatusServiceUnavailable, code: "not_leader", msg: err.Error() + "; nothing was written: retry (the region's next leader takes it)"}
	case errors.Is(err, store.ErrLogUnknown):
		ae = &apiError{status: http.StatusServiceUnavailable, code: "outcome_unknown", msg: err.Error() + "; retry (a write with its context is safe to retry)"}
	case errors.Is(err, store.ErrCopying):
		ae = &apiError{status: http.StatusServiceUnavailable, code: "node_seeding", msg: err.Error() + "; retry at another node, or here in a moment"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Cut short: a request a follower forwarded runs under the
		// leader's term, which ends when it loses the lease.
		ae = &apiError{status: http.StatusServiceUnavailable, code: "outcome_unknown", msg: err.Error() + "; the request was cut short (the node stopped leading, or is stopping): retry (a write with its context is safe to retry)"}
	default:
		ae = &apiError{status: http.StatusInternalServerError, code: "internal", msg: err.Error()}
	}
	body := map[string]any{"error": ae.msg, "code": ae.code}
	for k, v := range ae.details {
		body[k] = v
	}
	return ae.status, body
}

// validateKey enforces the key rules: 1..1024 bytes of UTF-8 without
// control characters.
func validateKey(key string) error {
	switch {
	case key == "":
		return errorf(http.StatusBadRequest, "bad_key", "key is empty: use /v1/kv/{key} with a key of 1 to %d bytes", MaxKeyBytes)
	case len(key) > MaxKeyBytes:
		return errorf(http.StatusBadRequest, "bad_key", "key is %d bytes; the limit is %d", len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return errorf(http.StatusBadRequest, "bad_key", "key is not valid UTF-8")
	}
	for i, r := range key {
		if unicode.IsControl(r) {
			return errorf(http.StatusBadRequest, "bad_key", "key has a control character (U+%04X) at byte %d", r, i)
		}
	}
	return nil
}

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range apiRoutes { // routes.go: the table openapi.json describes
		mux.Handle(rt.pattern, rt.handlerFor(n))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "not_found", "no route %s %s; see the HTTP API in the README", r.Method, r.URL.Path))
	})
	return n.metrics.instrument(n.forwarding(mux))
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed ...string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeError(w, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")))
}

func (n *Node) handleKV(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := validateKey(key); err != nil {
		writeError(w, err)
		return
	}
	var err error
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		err = n.get(w, r, key)
	case http.MethodPut:
		err = n.put(w, r, key, false)
	case http.MethodDelete:
		err = n.put(w, r, key, true)
	default:
		methodNotAllowed(w, r, "GET", "PUT", "DELETE")
		return
	}
	if err != nil {
		writeError(w, err)
	}
}

// readValue reads and checks a PUT body: one JSON document within the size
// limit, in the store's form (store.ParseDoc; checked once, here).
func (n *Node) readValue(r *http.Request) (store.Doc, error) {
	limit := int64(n.cfg.HTTP.MaxValueBytes)
	if r.ContentLength > limit {
		return store.Doc{}, errorf(http.StatusRequestEntityTooLarge, "too_large", "value is %d bytes; the limit is %d (http.max_value_bytes)", r.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return store.Doc{}, errorf(http.StatusBadRequest, "bad_body", "reading body: %v", err)
	}
	if int64(len(body)) > limit {
		return store.Doc{}, errorf(http.StatusRequestEntityTooLarge, "too_large", "value is over the limit of %d bytes (http.max_value_bytes)", limit)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return store.Doc{}, errorf(http.StatusBadRequest, "bad_json", "body is empty: send a JSON document")
	}
	doc, err := store.ParseDoc(body)
	if err != nil {
		return store.Doc{}, errorf(http.StatusBadRequest, "bad_json", "body is not valid JSON: %v", err)
	}
	if int64(doc.Len()) > limit {
		// The stored form escapes <, > and & (six bytes each): that is
		// what replicates, so it is what the limit bounds.
		return store.Doc{}, errorf(http.StatusRequestEntityTooLarge, "too_large", "value is %d bytes once stored (HTML-escaped as JSON encoders do); the limit is %d (http.max_value_bytes)", doc.Len(), limit)
	}
	return doc, nil
}

func (n *Node) put(w http.ResponseWriter, r *http.Request, key string, deleted bool) error {
	var value store.Doc
	if !deleted {
		var err error
		if value, err = n.readValue(r); err != nil {
			return err
		}
	}
	ctxVV, err := n.tokens.decodeContext(key, r.Header.Get(HeaderContext))
	if err != nil {
		return n.badToken(conflict.TokenContext, err)
	}
	session, err := n.tokens.decodeSession(r.Header.Get(HeaderSession))
	if err != nil {
		return n.badToken(conflict.TokenSession, err)
	}
	wait, err := n.waitBound(r)
	if err != nil {
		return err
	}
	rule, err := n.matchRule(key)
	if err != nil {
		return err
	}
	mut := store.Mutation{Key: key, Value: value, Deleted: deleted, Context: ctxVV}
	handled, err := n.routeHome(w, r, rule, &mut, session)
	if handled || err != nil {
		return err
	}
	if err := n.awaitContext(r.Context(), key, ctxVV, wait); err != nil {
		return err
	}
	res, err := n.write(r.Context(), rule, mut)
	if err != nil {
		return err
	}
	n.answerWrite(w, key, res, session)
	return nil
}

// awaitContext makes sure this region has applied every version a write's
// context names before the write is made: every counter of a context is a
// position in its actor's log, so a context naming one beyond what this
// region applied was read at a region whose writes have not arrived yet
// (then it waits for them, up to wait), or was forged. A context naming
// this region's own log beyond what it wrote is refused at once; one still
// ahead after the wait is answered 503 stale_context with what is missing.
func (n *Node) awaitContext(ctx context.Context, key string, vv conflict.VV, wait time.Duration) error {
	if len(vv) == 0 {
		return nil
	}
	actor := n.store.Actor()
	if own, seq := vv[actor], n.store.Seq(); own > seq {
		n.metrics.contextRefusals.WithLabelValues("own_log").Inc()
		return errorf(http.StatusBadRequest, "bad_context", "%s header names version %d of this region's log (%s), which has written %d: the token was not issued for this region's data", HeaderContext, own, actor, seq)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	missing := n.store.WaitApplied(wctx, vv)
	if missing == nil {
		return nil
	}
	n.metrics.contextRefusals.WithLabelValues("ahead").Inc()
	return &apiError{status: http.StatusServiceUnavailable, code: "stale_context",
		msg:     fmt.Sprintf("the context of %q names versions region %s has not applied within %s (written elsewhere, still on their way); retry, or write at the region that answered the read", key, n.cfg.Region, wait),
		details: map[string]any{"missing": n.missingDetail(missing)}}
}

// missingDetail describes, for a 503, what a session or context names that
// this region has not applied: actor -> {want, applied}.
func (n *Node) missingDetail(missing conflict.VV) map[string]any {
	applied := n.store.Applied()
	detail := map[string]any{}
	for actor, want := range missing {
		detail[actor] = map[string]uint64{"want": want, "applied": applied[actor]}
	}
	return detail
}

// waitBound returns how long a request may wait for this region to catch
// up with its session or context: X-Geo-Wait (milliseconds, capped at
// sessions.max_wait) or sessions.default_wait.
func (n *Node) waitBound(r *http.Request) (time.Duration, error) {
	s := r.Header.Get(HeaderWait)
	if s == "" {
		return n.cfg.Sessions.DefaultWait, nil
	}
	ms, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "bad_wait", "%s must be a whole number of milliseconds, got %q", HeaderWait, s)
	}
	// Capped before converting: a huge value must not overflow into a
	// negative duration.
	maxMs := uint64(n.cfg.Sessions.MaxWait.Milliseconds())
	return time.Duration(min(ms, maxMs)) * time.Millisecond, nil
}

// write applies a local mutation under its rule's write semantics.
func (n *Node) write(ctx context.Context, rule *rules.Rule, mut store.Mutation) (store.WriteResult, error) {
	mut.Supersede = mut.Context == nil && rule.SupersedesWithoutContext()
	return n.writeMutation(ctx, rule, mut)
}

// writeMutation makes a local write of a key governed by rule durable, as
// given.
func (n *Node) writeMutation(ctx context.Context, rule *rules.Rule, mut store.Mutation) (store.WriteResult, error) {
	if err := n.clockRefusal(); err != nil {
		return store.WriteResult{}, err
	}
	res, err := n.store.Write(ctx, mut)
	if err != nil {
		return res, fmt.Errorf("write %q: %w", mut.Key, err) // store.ErrClosed: errorBody's 503
	}
	n.metrics.writes.WithLabelValues(op(mut.Deleted)).Inc()
	n.maybeMerge(rule, mut.Key, res.Record)
	return res, nil
}

func op(deleted bool) string {
	if deleted {
		return "delete"
	}
	return "put"
}

type writeAnswer struct {
	Key     string `json:"key"`
	Context string `json:"context"`
	Session string `json:"session"`
	// Dot names the version the write created ("actor:counter"), as
	// ?meta=true shows it: clients and checkers can track it.
	Dot string `json:"dot"`
	// HLC is the new version's hybrid logical clock (what last-write-wins
	// compares).
	HLC conflict.HLC `json:"hlc"`
	// Siblings are the live values concurrent with this write that remain
	// (the returned context covers them: merge them into the next write).
	Siblings []json.RawMessage `json:"siblings,omitempty"`
}

func (n *Node) answerWrite(w http.ResponseWriter, key string, res store.WriteResult, session conflict.VV) {
	ans := n.writeAnswerFor(key, res, session)
	w.Header().Set(HeaderContext, ans.Context)
	w.Header().Set(HeaderSession, ans.Session)
	writeJSON(w, http.StatusOK, ans)
}

// writeAnswerFor builds a write's answer: the key's new context, the
// client's session advanced past this write, and any remaining siblings.
func (n *Node) writeAnswerFor(key string, res store.WriteResult, session conflict.VV) writeAnswer {
	origin := res.Event.Origin()
	if res.Event.OSeq > session[origin] {
		session = session.Merge(conflict.VV{origin: res.Event.OSeq})
	}
	ans := writeAnswer{Key: key, Context: n.tokens.encodeContext(key, res.Record.Context()), Session: n.tokens.encodeSession(session), Dot: res.Event.Version.Dot.String(), HLC: res.Event.Version.HLC}
	if live := res.Record.Live(); len(live) > 1 {
		for _, v := range live {
			ans.Siblings = append(ans.Siblings, v.Value)
		}
	}
	return ans
}

// waitSession blocks a read until this region has applied what the
// request's session token names, up to the X-Geo-Wait bound.
func (n *Node) waitSession(r *http.Request) (conflict.VV, error) {
	session, err := n.tokens.decodeSession(r.Header.Get(HeaderSession))
	if err != nil {
		return nil, n.badToken(conflict.TokenSession, err)
	}
	if len(session) == 0 {
		return session, nil
	}
	wait, err := n.waitBound(r)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	missing := n.store.WaitApplied(ctx, session)
	if missing == nil {
		return session, nil
	}
	n.metrics.staleReads.Inc()
	return nil, &apiError{status: http.StatusServiceUnavailable, code: "stale",
		msg:     fmt.Sprintf("region %s has not applied everything the session has seen within %s; retry, or read at the region that took the write", n.cfg.Region, wait),
		details: map[string]any{"missing": n.missingDetail(missing)}}
}

type metaVersion struct {
	Value   json.RawMessage `json:"value"`
	Origin  string          `json:"origin"`
	HLC     conflict.HLC    `json:"hlc"`
	Deleted bool            `json:"deleted"`
	Dot     string          `json:"dot"`
}

func (n *Node) get(w http.ResponseWriter, r *http.Request, key string) error {
	session, err := n.waitSession(r)
	if err != nil {
		return err
	}
	rec, ok, err := n.store.Get(key)
	if err != nil {
		return err
	}
	meta := r.URL.Query().Get("meta")
	// The answer's session covers the request's and what the answer
	// shows, so that a later read with it, at any region or node, sees
	// at least this (monotonic reads).
	if ok {
		session = session.Merge(rec.Context())
	}
	if len(session) > 0 {
		w.Header().Set(HeaderSession, n.tokens.encodeSession(session))
	}
	if !ok {
		return errorf(http.StatusNotFound, "not_found", "key %q not found", key)
	}
	rule, err := n.matchRule(key)
	if err != nil {
		return err
	}
	w.Header().Set(HeaderContext, n.tokens.encodeContext(key, rec.Context()))
	w.Header().Set(HeaderRule, rule.Name())
	if meta == "true" || meta == "1" {
		vs := make([]metaVersion, 0, len(rec.Versions))
		for _, v := range rec.Versions {
			val := v.Value
			if v.Deleted {
				val = json.RawMessage("null")
			}
			vs = append(vs, metaVersion{Value: val, Origin: v.Origin, HLC: v.HLC, Deleted: v.Deleted, Dot: v.Dot.String()})
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"key": key, "context": n.tokens.encodeContext(key, rec.Context()), "versions": vs, "rule": rule.Name(),
		})
		return nil
	}
	res, err := rule.Resolve(key, n.cfg.Region, rec.Versions)
	if err != nil {
		n.ruleError(key, err)
	}
	switch res.Outcome {
	case rules.OutcomeOne:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(append(res.Value, '\n')) //nolint:errcheck // client gone
	case rules.OutcomeSiblings:
		writeJSON(w, http.StatusMultipleChoices, map[string]any{"siblings": res.Siblings})
	default:
		return errorf(http.StatusNotFound, "not_found", "key %q is deleted", key)
	}
	return nil
}

// parseLimit reads a limit query parameter: default 100, 1 to 10000.
func parseLimit(s string) (int, error) {
	if s == "" {
		return 100, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > 10000 {
		return 0, errorf(http.StatusBadRequest, "bad_limit", "limit must be a whole number from 1 to 10000, got %q", s)
	}
	return v, nil
}

func (n *Node) handleList(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r, "GET")
		return
	}
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeError(w, err)
		return
	}
	if conflicted := q.Get("conflicted"); conflicted == "true" || conflicted == "1" {
		n.listConflicted(w, q.Get("prefix"), q.Get("after"), limit) // rulesapi.go
		return
	}
	keys, err := n.store.List(q.Get("prefix"), q.Get("after"), limit+1, true)
	if err != nil {
		writeError(w, err)
		return
	}
	ans := map[string]any{"keys": keys}
	if len(keys) > limit {
		ans["keys"], ans["next"] = keys[:limit], keys[limit-1]
	}
	writeJSON(w, http.StatusOK, ans)
}

func (n *Node) handleConflicts(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r, "GET")
		return
	}
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeError(w, err)
		return
	}
	entries, err := n.store.Conflicts(q.Get("key"), limit)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conflicts": entries})
}

func (n *Node) handleHealth(w http.ResponseWriter, r *http.Request) {
	if n.closing.Load() {
		writeError(w, errorf(http.StatusServiceUnavailable, "shutting_down", "region %s is shutting down", n.cfg.Region))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "region": n.cfg.Region})
}

func (n *Node) handleLinkAdmin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, "POST")
		return
	}
	peer, action := r.PathValue("peer"), r.PathValue("action")
	if action != "pause" && action != "resume" {
		writeError(w, errorf(http.StatusNotFound, "not_found", "no admin action %q: use pause or resume", action))
		return
	}
	l := n.link(peer)
	if l == nil {
		writeError(w, errorf(http.StatusNotFound, "no_link", "region %s has no link from %q", n.cfg.Region, peer))
		return
	}
	if action == "pause" {
		if err := pauseLink(r.Context(), l); err != nil {
			writeError(w, errorf(http.StatusServiceUnavailable, "pause_pending",
				"the link from %s is paused, but an apply under way has not finished within %s; the link stops once it has applied what was delivered to it before the pause", peer, pauseWait))
			return
		}
	} else {
		l.Resume()
	}
	n.log.Info("link "+action+"d by admin", "from", peer)
	writeJSON(w, http.StatusOK, l.Status())
}
