package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Resolver settles a key's siblings: it returns the one value that replaces
// them (any JSON-encodable value, or json.RawMessage). Like a Riak
// client's conflict resolver, it should be deterministic and keep what
// every sibling contributed (a union of carts, the newest field by field),
// since the client writes its result back with the causal context that
// covers all the siblings: they are superseded everywhere once the write
// replicates. An error leaves the siblings as they are and is returned.
type Resolver func(ctx context.Context, key string, siblings []json.RawMessage) (any, error)

// maxResolveRounds bounds the write-backs of one call: a write-back that
// meets yet another concurrent write is resolved again, at most this often.
const maxResolveRounds = 3

func (c *Client) callOptions(opts []CallOption) *call {
	cl := &call{wait: c.s.wait, resolver: c.s.resolver}
	for _, o := range opts {
		o(cl)
	}
	return cl
}

// kvRequest builds a request about key with the call's tokens.
func (c *Client) kvRequest(method, key string, body []byte, cl *call) *request {
	r := &request{method: method, path: kvPath(key), body: body, header: http.Header{}, key: key,
		write: method != http.MethodGet, session: true}
	if cl.session != "" {
		r.header.Set(HeaderSession, cl.session)
	}
	if r.write {
		token := cl.context
		if !cl.setContext {
			token, _ = c.contexts.get(key)
		}
		if token != "" {
			r.header.Set(HeaderContext, token)
		}
	} else if cl.wait > 0 {
		r.header.Set(HeaderWait, waitHeader(cl.wait))
		r.wait = cl.wait
	}
	return r
}

// observe keeps an answer's context for key, and forgets the key's context
// when the server refused it.
func (c *Client) observe(key string, a *answer) {
	if a.status == http.StatusBadRequest {
		if _, bad := a.err().(*BadContextError); bad {
			c.contexts.forget(key)
		}
		return
	}
	c.contexts.observe(key, a.header.Get(HeaderContext))
}

// encodeValue renders a document: json.RawMessage and []byte as they are
// (the server checks them), anything else with encoding/json.
func encodeValue(v any) ([]byte, error) {
	switch v := v.(type) {
	case json.RawMessage:
		return v, nil
	case []byte:
		return v, nil
	}
	return json.Marshal(v)
}

// Put writes value (a JSON-encodable value; json.RawMessage and []byte are
// sent as they are) to key, with the causal context the client keeps for
// the key (the last one read or written), so that the write supersedes
// exactly what the client has seen; the answer's context and session are
// kept for the next calls. It returns once the region that took the write
// has made it durable.
//
// When the write leaves siblings (a concurrent write elsewhere, under a
// siblings or custom rule), the resolver, if any, settles them and its
// value is written back; the result is then the write-back's.
//
// Retries: at another endpoint when the request could not be sent, and
// after the answers the API sends for writes it did not apply (503
// shutting_down, stale_context, clock_skew, home_unreachable; 507
// insufficient_storage). A write sent without an answer fails with
// ErrOutcomeUnknown unless WithRetryUnknownWrites.
func (c *Client) Put(ctx context.Context, key string, value any, opts ...CallOption) (WriteResult, error) {
	body, err := encodeValue(value)
	if err != nil {
		return WriteResult{}, fmt.Errorf("put %q: encode value: %w", key, err)
	}
	cl := c.callOptions(opts)
	res, err := c.write(ctx, http.MethodPut, key, body, cl)
	if err != nil || len(res.Siblings) == 0 || cl.resolver == nil {
		return res, err
	}
	_, wb, err := c.resolve(ctx, key, res.Siblings, res.Context, cl)
	if wb == nil {
		return res, err
	}
	return *wb, err
}

// Delete writes a tombstone for key with the causal context the client
// keeps for it; the tombstone replicates like a write. Retries as Put.
func (c *Client) Delete(ctx context.Context, key string, opts ...CallOption) (WriteResult, error) {
	return c.write(ctx, http.MethodDelete, key, nil, c.callOptions(opts))
}

func (c *Client) write(ctx context.Context, method, key string, body []byte, cl *call) (WriteResult, error) {
	a, err := c.do(ctx, c.kvRequest(method, key, body, cl))
	if err != nil {
		return WriteResult{}, err
	}
	c.observe(key, a)
	if err := a.err(); err != nil {
		return WriteResult{}, err
	}
	var res WriteResult
	if err := json.Unmarshal(a.body, &res); err != nil {
		return WriteResult{}, fmt.Errorf("%s %q: decode the answer from %s: %w", method, key, a.endpoint, err)
	}
	return res, nil
}

// Get reads key: the one value its rule shows, or its siblings. With a
// resolver (WithResolver, Resolve) siblings are settled and the result
// written back (Value.WriteBack), so they go away. A missing or deleted key
// is a *NotFoundError (IsNotFound).
//
// The read carries the client's session, so it shows every write the
// client made or read before, at whatever region answers (the region waits
// up to X-Geo-Wait to catch up, else answers 503 stale and the client tries
// elsewhere); and an answer older than what the client already saw of the
// key (the key's kept causal context) is not accepted either: the client
// tries elsewhere, and fails with ErrBehind when no endpoint caught up.
// Reads are retried on any failure that another attempt may fix.
func (c *Client) Get(ctx context.Context, key string, opts ...CallOption) (Value, error) {
	cl := c.callOptions(opts)
	a, err := c.do(ctx, c.kvRequest(http.MethodGet, key, nil, cl))
	if err != nil {
		return Value{}, err
	}
	c.observe(key, a)
	if err := a.err(); err != nil {
		return Value{}, err
	}
	v := Value{Key: key, Context: a.header.Get(HeaderContext), Rule: a.header.Get(HeaderRule)}
	switch a.status {
	case http.StatusOK:
		v.Data = json.RawMessage(bytes.TrimSpace(a.body))
		return v, nil
	case http.StatusMultipleChoices:
		var s struct {
			Siblings []json.RawMessage `json:"siblings"`
		}
		if err := json.Unmarshal(a.body, &s); err != nil {
			return Value{}, fmt.Errorf("get %q: decode siblings from %s: %w", key, a.endpoint, err)
		}
		v.Siblings = s.Siblings
	default:
		return Value{}, fmt.Errorf("get %q: unexpected answer %d from %s", key, a.status, a.endpoint)
	}
	if cl.resolver == nil {
		return v, nil
	}
	data, wb, err := c.resolve(ctx, key, v.Siblings, v.Context, cl)
	if wb != nil {
		v.WriteBack, v.Context = wb, wb.Context
		if len(wb.Siblings) == 0 {
			v.Data, v.Siblings = data, nil
		} else {
			v.Siblings = wb.Siblings
		}
	}
	return v, err
}

// resolve settles siblings read with context token: the resolver's value
// is written with that context, and again (at most maxResolveRounds times)
// while the write-back meets newer concurrent values. It returns the last
// value written and the last write's answer (nil if none was made).
func (c *Client) resolve(ctx context.Context, key string, siblings []json.RawMessage, token string, cl *call) (json.RawMessage, *WriteResult, error) {
	var data json.RawMessage
	var last *WriteResult
	for range maxResolveRounds {
		v, err := cl.resolver(ctx, key, siblings)
		if err != nil {
			return data, last, fmt.Errorf("resolve siblings of %q: %w", key, err)
		}
		if data, err = encodeValue(v); err != nil {
			return nil, last, fmt.Errorf("resolve siblings of %q: encode value: %w", key, err)
		}
		wcl := *cl
		wcl.context, wcl.setContext = token, true
		res, err := c.write(ctx, http.MethodPut, key, data, &wcl)
		if err != nil {
			return data, last, fmt.Errorf("write back the resolved value of %q: %w", key, err)
		}
		last = &res
		if len(res.Siblings) == 0 {
			break
		}
		siblings, token = res.Siblings, res.Context
	}
	return data, last, nil
}

// Meta reads every version of key's frontier, tombstones included, with
// origins, clocks and dots (GET ?meta=true). It carries the session and
// checks monotonic reads like Get. A key without a record is a
// *NotFoundError.
func (c *Client) Meta(ctx context.Context, key string, opts ...CallOption) (Meta, error) {
	cl := c.callOptions(opts)
	r := c.kvRequest(http.MethodGet, key, nil, cl)
	r.path += "?meta=true"
	a, err := c.do(ctx, r)
	if err != nil {
		return Meta{}, err
	}
	c.observe(key, a)
	if err := a.err(); err != nil {
		return Meta{}, err
	}
	var m Meta
	if err := json.Unmarshal(a.body, &m); err != nil {
		return Meta{}, fmt.Errorf("meta %q: decode the answer from %s: %w", key, a.endpoint, err)
	}
	return m, nil
}
