package client

import (
	"container/list"
	"sync"

	"github.com/geogate/geogate/conflict"
)

// contexts keeps the causal context last seen per key, for the most
// recently used keys. It is safe for concurrent use.
type contexts struct {
	mu    sync.Mutex // guards everything below; nothing else is held with it
	limit int
	order *list.List // of *contextEntry, most recent first
	byKey map[string]*list.Element
}

type contextEntry struct {
	key   string
	token string
	vv    conflict.VV // nil when the token does not parse
}

func newContexts(limit int) *contexts {
	return &contexts{limit: limit, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the key's token and its vector (nil if none or unparsed).
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
	return e.token, e.vv
}

// observe records a context token the server answered for key: the join
// with what is kept, so answers arriving out of order (concurrent calls)
// never lose what an earlier one showed. A token that does not parse
// replaces what is kept.
func (c *contexts) observe(key, token string) {
	if c == nil || token == "" {
		return
	}
	vv, err := conflict.ParseContextToken(key, token)
	if err != nil {
		vv = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		e := el.Value.(*contextEntry)
		c.order.MoveToFront(el)
		if vv != nil && e.vv != nil && !vv.Descends(e.vv) {
			vv = vv.Merge(e.vv)
			token = conflict.ContextToken(key, vv)
		}
		e.token, e.vv = token, vv
		return
	}
	c.byKey[key] = c.order.PushFront(&contextEntry{key: key, token: token, vv: vv})
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
// kept one covers: the answering endpoint has not seen all that this
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
	vv, err := conflict.ParseContextToken(key, answered)
	return err == nil && !vv.Descends(kept)
}

// session is the client's session: the join of every session token the
// server answered. It is safe for concurrent use.
type session struct {
	mu  sync.Mutex // guards vv and raw
	vv  conflict.VV
	raw string // the last token, when it does not parse (sent as is)
}

// token returns the session to send, joined with extra (a token given to
// one call).
func (s *session) token(extra string) string {
	var vv conflict.VV
	raw := ""
	if s != nil {
		s.mu.Lock()
		vv, raw = s.vv, s.raw
		s.mu.Unlock()
	}
	if extra != "" {
		x, err := conflict.ParseSessionToken(extra)
		if err != nil {
			return extra
		}
		vv = x.Merge(vv)
	}
	if len(vv) == 0 {
		return raw
	}
	return conflict.SessionToken(vv)
}

// observe joins a session token from an answer into the session.
func (s *session) observe(token string) {
	if s == nil || token == "" {
		return
	}
	vv, err := conflict.ParseSessionToken(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.vv, s.raw = nil, token
		return
	}
	s.vv, s.raw = vv.Merge(s.vv), ""
}

// set replaces the session.
func (s *session) set(token string) error {
	vv, err := conflict.ParseSessionToken(token)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vv, s.raw = vv, ""
	return nil
}
