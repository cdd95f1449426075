package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxAnswerBytes bounds the body of one answer the client reads.
const maxAnswerBytes = 64 << 20

// Client talks to one geogate deployment through one or more endpoints. It
// is safe for concurrent use; create one per application (or per user
// session, when sessions must not be shared) and reuse it.
type Client struct {
	hc       *http.Client
	s        settings
	retry    Retry
	eps      *endpoints
	contexts *contexts // nil without tracking
	session  *session  // nil without tracking
}

// New returns a client for the endpoints urls: base URLs of regions (or
// of nodes), such as "https://us-east.example.com:7101", the first being
// the preferred one (usually the nearest region). It reads files the
// options name and checks the URLs; it makes no request.
func New(urls []string, opts ...Option) (*Client, error) {
	if len(urls) == 0 {
		return nil, errors.New("client: no endpoint: give at least one base URL like http://127.0.0.1:7101")
	}
	eps := &endpoints{}
	for _, e := range urls {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("client: endpoint %q is not a base URL like http://127.0.0.1:7101", e)
		}
		eps.urls = append(eps.urls, strings.TrimRight(u.String(), "/"))
	}
	s := defaults()
	for _, o := range opts {
		if err := o(&s); err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	eps.failback = s.failback
	c := &Client{s: s, retry: s.retry.withDefaults(), eps: eps}
	if s.track {
		c.contexts, c.session = newContexts(s.contextCache), &session{}
	}
	if s.httpClient != nil {
		if s.tls != nil {
			return nil, errors.New("client: TLS options do not combine with WithHTTPClient: set TLS on its transport")
		}
		hc := *s.httpClient
		c.hc = &hc
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		tr.IdleConnTimeout = 30 * time.Second
		tr.TLSClientConfig = s.tls
		c.hc = &http.Client{Transport: tr}
	}
	// Redirects are followed by open, which knows which ones to follow and
	// where the token may go.
	c.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c, nil
}

// Close releases the client's idle connections. The client stays usable.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Session returns the client's session token: every log position it has
// seen. Hand it to another client (Session, SetSession) to carry
// read-your-writes across processes. "" without tracking or before the
// first write.
func (c *Client) Session() string {
	if c.session == nil {
		return ""
	}
	return c.session.token("")
}

// SetSession replaces the client's session with token (for instance one
// kept in a user's cookie). Without tracking it has no effect.
func (c *Client) SetSession(token string) error {
	if c.session == nil {
		return nil
	}
	if err := c.session.set(token); err != nil {
		return fmt.Errorf("client: session token: %w", err)
	}
	return nil
}

// Context returns the causal context the client keeps for key ("" if
// none).
func (c *Client) Context(key string) string {
	tok, _ := c.contexts.get(key)
	return tok
}

// Endpoint returns the base URL the next call goes to first.
func (c *Client) Endpoint() string {
	return c.eps.urls[c.eps.start(time.Now())]
}

// endpoints is the client's endpoint list with the one in use.
type endpoints struct {
	urls     []string
	failback time.Duration

	mu      sync.Mutex // guards current and movedAt
	current int
	movedAt time.Time
}

// start returns the endpoint a call tries first: the one that answered
// last, or the first again after the failback time.
func (e *endpoints) start(now time.Time) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.current != 0 && now.Sub(e.movedAt) >= e.failback {
		e.current = 0
	}
	return e.current
}

// answered records that endpoint i answered.
func (e *endpoints) answered(i int, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i != e.current {
		e.current, e.movedAt = i, now
	}
}

// request is one call's HTTP request.
type request struct {
	method string
	// path is the escaped path with its query, e.g. "/v1/kv/a%2Fb".
	path   string
	body   []byte
	header http.Header
	// key, for a request about one key: the monotonic-reads check applies
	// to reads.
	key string
	// write: a PUT or DELETE (or an admin action), retried only when it
	// surely was not applied.
	write bool
	// session: carry the session and merge the answer's.
	session bool
	// wait is the session wait the request asks for (attempt timeout).
	wait time.Duration
}

// answer is one HTTP answer, read whole.
type answer struct {
	status   int
	header   http.Header
	body     []byte
	endpoint string
}

// err returns the typed error of an error answer, nil for a success.
func (a *answer) err() error {
	if a.status < 400 && a.status != http.StatusTemporaryRedirect && a.status != http.StatusPermanentRedirect {
		return nil
	}
	return newAnswerError(a.status, a.header, a.body, a.endpoint)
}

// do runs a request with retries: each attempt at the next endpoint, the
// rounds spaced by Retry's backoff, until an answer to hand back, an error
// that another attempt cannot fix, the attempts run out or ctx ends. Error
// answers come back as the answer (see answer.err), with a nil error.
func (c *Client) do(ctx context.Context, r *request) (*answer, error) {
	n := len(c.eps.urls)
	first := c.eps.start(time.Now())
	var last error
	var lastAnswer *answer
	lastCode := ""
	for i := range c.retry.MaxAttempts {
		if d := c.retry.delay(i, n, rand.Float64()); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, c.canceled(ctx, r, last)
			case <-t.C:
			}
		}
		ep := (first + i) % n
		a, err := c.send(ctx, c.eps.urls[ep], r)
		if err != nil && ctx.Err() != nil {
			if r.write && !notSent(err) {
				// The write may have left before the context ended.
				return nil, fmt.Errorf("%s %s at %s: %w: %w", r.method, r.path, c.eps.urls[ep], ErrOutcomeUnknown, context.Cause(ctx))
			}
			return nil, c.canceled(ctx, r, err)
		}
		if err != nil {
			last = fmt.Errorf("%s %s at %s: %w", r.method, r.path, c.eps.urls[ep], err)
			if errors.Is(err, ErrTooManyRedirects) || errors.Is(err, ErrInsecureRedirect) {
				return nil, last // answered, not applied: nothing another attempt fixes
			}
			switch transportVerdict(err, r.write, c.s.retryUnknownWrites) {
			case final:
				return nil, last
			case unknown:
				return nil, fmt.Errorf("%s %s at %s: %w: %w", r.method, r.path, c.eps.urls[ep], ErrOutcomeUnknown, err)
			}
			continue
		}
		if r.session && c.session != nil {
			c.session.observe(a.header.Get(HeaderSession))
		}
		code := ""
		if a.status >= 400 {
			if ae := (*APIError)(nil); errors.As(a.err(), &ae) {
				code = ae.Code
			}
		}
		switch answerVerdict(a.status, code, r.write) {
		case retry:
			last, lastAnswer, lastCode = nil, a, code
			continue
		case unknown:
			if c.s.retryUnknownWrites {
				last, lastAnswer, lastCode = nil, a, code
				continue
			}
		}
		if !r.write && r.key != "" && (a.status < 300 || a.status == http.StatusMultipleChoices || a.status == http.StatusNotFound) &&
			c.contexts.behind(r.key, a.header.Get(HeaderContext)) {
			last, lastAnswer = fmt.Errorf("%s %s at %s: %w", r.method, r.path, c.eps.urls[ep], ErrBehind), a
			continue
		}
		c.eps.answered(ep, time.Now())
		return a, nil
	}
	if errors.Is(last, ErrBehind) {
		// Report the regression once, then take what the regions have: a
		// kept context no region reaches (a key removed and re-created)
		// must not fail every later read.
		c.contexts.forget(r.key)
		if lastAnswer.status == http.StatusNotFound {
			return lastAnswer, nil
		}
		return nil, last
	}
	if lastAnswer != nil && last == nil && !r.write && r.session && c.session != nil && lastCode == CodeStale {
		// No endpoint reached what the session has seen (its writes, and
		// what its reads showed). Report the regression once, then take
		// what the regions have: a session naming positions no running
		// region holds (one lost for good) must not fail every later read.
		c.session.reset()
		if r.key != "" {
			c.contexts.forget(r.key)
		}
		return nil, fmt.Errorf("%s %s: %w: %w", r.method, r.path, ErrBehind, lastAnswer.err())
	}
	if lastAnswer != nil && last == nil {
		return lastAnswer, nil // the last retryable answer, as its typed error
	}
	return nil, fmt.Errorf("%w (%d attempts at %d endpoints)", last, c.retry.MaxAttempts, n)
}

// canceled reports a call ended by its context, with the last failure.
func (c *Client) canceled(ctx context.Context, r *request, last error) error {
	if last != nil && !errors.Is(last, ctx.Err()) {
		return fmt.Errorf("%s %s: %w (last: %v)", r.method, r.path, context.Cause(ctx), last)
	}
	return fmt.Errorf("%s %s: %w", r.method, r.path, context.Cause(ctx))
}

// send makes one attempt at endpoint base, bounded by the attempt
// timeout, and returns the answer read whole, or the transport error.
func (c *Client) send(ctx context.Context, base string, r *request) (*answer, error) {
	if c.s.attemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.s.attemptTimeout+r.wait)
		defer cancel()
	}
	resp, err := c.open(ctx, base, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: body, endpoint: origin(resp.Request.URL)}, nil
}

// open sends r to endpoint base and follows redirects, up to the limit. It
// returns the response with its body unread (the caller closes it): the
// seam for an answer read as a stream, such as the change feed's.
func (c *Client) open(ctx context.Context, base string, r *request) (*http.Response, error) {
	target := base + r.path
	secure := strings.HasPrefix(base, "https:")
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, r.method, target, bytes.NewReader(r.body))
		if err != nil {
			return nil, err
		}
		if r.body == nil {
			req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, vs := range r.header {
			req.Header[k] = vs
		}
		if r.session && c.session != nil {
			if tok := c.session.token(r.header.Get(HeaderSession)); tok != "" {
				req.Header.Set(HeaderSession, tok)
			}
		}
		req.Header.Set("User-Agent", c.s.userAgent)
		if c.s.token != "" { // open refuses redirects from https to http

			req.Header.Set("Authorization", "Bearer "+c.s.token)
		}
		sent := time.Now()
		resp, err := c.hc.Do(req)
		if c.s.observer != nil {
			ex := Exchange{Method: r.method, URL: target, Err: err, Duration: time.Since(sent)}
			if resp != nil {
				ex.Status, ex.Header = resp.StatusCode, resp.Header
			}
			c.s.observer(ex)
		}
		if err != nil {
			return nil, err
		}
		if (resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect) || c.s.redirects == 0 {
			return resp, nil
		}
		location := resp.Header.Get("Location")
		loc, err := req.URL.Parse(location)
		if err != nil || location == "" {
			return resp, nil // no usable Location: hand back the redirect itself
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes)) //nolint:errcheck // only to reuse the connection
		resp.Body.Close()
		if hop >= c.s.redirects {
			return nil, fmt.Errorf("%w: %d, the last to %s", ErrTooManyRedirects, hop+1, loc.Redacted())
		}
		if secure && loc.Scheme != "https" {
			return nil, fmt.Errorf("%w: to %s", ErrInsecureRedirect, loc.Redacted())
		}
		target = loc.String()
	}
}

func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }

// kvPath is the escaped path of a key: every byte that is not unreserved
// is percent-encoded, "/" and "." included, so that any key reaches the
// server unchanged (no path cleaning of "." or ".." segments).
func kvPath(key string) string {
	return "/v1/kv/" + strings.ReplaceAll(url.PathEscape(key), ".", "%2E")
}

// waitHeader renders a session wait for X-Geo-Wait.
func waitHeader(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
