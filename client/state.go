package client

import (
	"container/list"
	"strings"
	"sync"

	"github.com/geogate/geogate/conflict"
)

// Tokens are signed by the regions (conflict.SignToken), so a client cannot
// join two of them into one. It keeps, per key and for its session, the
// set of tokens it was answered that no other kept token covers (usually
// one: an answer covers what the request sent) and sends them all,
// separated by commas; the region verifies each and joins their vectors.

// maxKeptTokens bounds a token set; past it the oldest token is dropped
// (sending less context or session is safe: it only supersedes or waits
// for less).
const maxKeptTokens = 8

// tokenSet is a set of tokens of one kind, none covered by another.
type tokenSet struct {
	tokens []string
	vvs    []conflict.VV // vvs[i] is tokens[i]'s vector; nil if it does not parse
}

// add joins tok into the set: it is dropped if a kept token covers it, and
// it drops the kept tokens it covers. A token that does not parse replaces
// the set (it is sent as is; the region will say what is wrong with it).
func (s *tokenSet) add(tok string, vv conflict.VV, parsed bool) {
	if !parsed {
		s.tokens, s.vvs = []string{tok}, []conflict.VV{nil}
		return
	}
	keep := 0
	for i, kept := range s.vvs {
		switch {
		case kept != nil && kept.Descends(vv):
			return
		case kept != nil && vv.Descends(kept):
			// covered by the new token: dropped
		default:
			s.tokens[keep], s.vvs[keep] = s.tokens[i], s.vvs[i]
			keep++
		}
	}
	s.tokens, s.vvs = append(s.tokens[:keep], tok), append(s.vvs[:keep], vv)
	if len(s.tokens) > maxKeptTokens {
		s.tokens, s.vvs = s.tokens[1:], s.vvs[1:]
	}
}

// header is the set as a header value.
func (s *tokenSet) header() string { return strings.Join(s.tokens, ",") }

// joined is the join of the set's vectors.
func (s *tokenSet) joined() conflict.VV {
	var out conflict.VV
	for _, vv := range s.vvs {
		out = out.Merge(vv)
	}
	return out
}

// contexts keeps the causal context last seen per key, for the most
// recently used keys. It is safe for concurrent use.
type contexts struct {
	mu    sync.Mutex // guards everything below; nothing else is held with it
	limit int
	order *list.List // of *contextEntry, most recent first
	byKey map[string]*list.Element
}

type contextEntry struct {
	key string
	set tokenSet
}

func newContexts(limit int) *contexts {
	return &contexts{limit: limit, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the key's context header (one token or several) and the join
// of their vectors (nil if none, or unparsed).
func (c *contexts) get(key string) (string, conflict.VV) {
	if c == nil {
		return "", nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return "", nil
	}
	c.order.MoveToFront(el)
	e := el.Value.(*contextEntry)
	return e.set.header(), e.set.joined()
}

// observe records a context token the server answered for key: kept with
// the others unless one of them covers it, so answers arriving out of
// order (concurrent calls) never lose what an earlier one showed.
func (c *contexts) observe(key, token string) {
	if c == nil || token == "" {
		return
	}
	vv, err := conflict.PeekToken(conflict.TokenContext, key, token)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.order.MoveToFront(el)
		el.Value.(*contextEntry).set.add(token, vv, err == nil)
		return
	}
	e := &contextEntry{key: key}
	e.set.add(token, vv, err == nil)
	c.byKey[key] = c.order.PushFront(e)
	for c.order.Len() > c.limit {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.byKey, old.Value.(*contextEntry).key)
	}
}

// forget drops what is kept for key.
func (c *contexts) forget(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.order.Remove(el)
		delete(c.byKey, key)
	}
}

// behind reports whether an answer's context for key misses something the
// kept ones cover: the answering endpoint has not seen all that this
// client has. An answer without a context (no record there) is behind any
// kept context that names a version. Unparsed tokens never count as
// behind.
func (c *contexts) behind(key, answered string) bool {
	_, kept := c.get(key)
	if len(kept) == 0 {
		return false
	}
	if answered == "" {
		return true
	}
	vv, err := conflict.PeekToken(conflict.TokenContext, key, answered)
	return err == nil && !vv.Descends(kept)
}

// session is the client's session: the session tokens the server answered
// that no other covers. It is safe for concurrent use.
type session struct {
	mu   sync.Mutex // guards held
	held tokenSet
}

// token returns the session header to send, with extra (a session header
// given to one call) joined in.
func (s *session) token(extra string) string {
	var set tokenSet
	if s != nil {
		s.mu.Lock()
		set = tokenSet{tokens: append([]string(nil), s.held.tokens...), vvs: append([]conflict.VV(nil), s.held.vvs...)}
		s.mu.Unlock()
	}
	for _, tok := range conflict.SplitTokens(extra) {
		vv, err := conflict.PeekToken(conflict.TokenSession, "", tok)
		set.add(tok, vv, err == nil)
	}
	return set.header()
}

// observe joins a session token from an answer into the session.
func (s *session) observe(token string) {
	if s == nil || token == "" {
		return
	}
	vv, err := conflict.PeekToken(conflict.TokenSession, "", token)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held.add(token, vv, err == nil)
}

// reset empties the session.
func (s *session) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = tokenSet{}
}

// vector returns the join of the session's tokens.
func (s *session) vector() conflict.VV {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held.joined()
}

// set replaces the session with a header value (one token or several).
func (s *session) set(header string) error {
	var set tokenSet
	for _, tok := range conflict.SplitTokens(header) {
		vv, err := conflict.PeekToken(conflict.TokenSession, "", tok)
		if err != nil {
			return err
		}
		set.add(tok, vv, true)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = set
	return nil
}
