package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// settings are what Options set; New turns them into a Client.
type settings struct {
	httpClient         *http.Client
	tls                *tls.Config
	token              string
	retry              Retry
	redirects          int
	retryUnknownWrites bool
	attemptTimeout     time.Duration
	wait               time.Duration
	resolver           Resolver
	track              bool
	contextCache       int
	failback           time.Duration
	userAgent          string
	observer           func(Exchange)
}

func defaults() settings {
	return settings{redirects: 5, attemptTimeout: 10 * time.Second, track: true, contextCache: 10000,
		failback: 30 * time.Second, userAgent: "geogate-go-client"}
}

// An Option configures a Client (New).
type Option func(*settings) error

// WithToken sends "Authorization: Bearer <token>" with every request,
// redirected ones included (but never from https to http).
func WithToken(token string) Option {
	return func(s *settings) error {
		if token == "" {
			return errors.New("WithToken: empty token")
		}
		s.token = token
		return nil
	}
}

// WithTLSConfig sets the TLS configuration of the client's connections
// (CA pool, client certificate, server name). Not with WithHTTPClient.
func WithTLSConfig(c *tls.Config) Option {
	return func(s *settings) error {
		s.tls = c.Clone()
		return nil
	}
}

// WithTLSFiles trusts the PEM certificates in caFile (instead of the
// system's) and, if certFile and keyFile are set, presents that client
// certificate. Any of them may be "". The files are read by New.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(s *settings) error {
		c := s.tls
		if c == nil {
			c = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("CA file %s holds no PEM certificate", caFile)
			}
			c.RootCAs = pool
		}
		if (certFile == "") != (keyFile == "") {
			return errors.New("a client certificate needs both a certificate file and a key file")
		}
		if certFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return fmt.Errorf("client certificate: %w", err)
			}
			c.Certificates = []tls.Certificate{cert}
		}
		s.tls = c
		return nil
	}
}

// WithHTTPClient sends requests through hc (its transport, timeout and
// cookie jar; the client follows redirects itself, whatever hc's
// CheckRedirect says). TLS options do not combine with it: configure TLS on
// hc's transport.
func WithHTTPClient(hc *http.Client) Option {
	return func(s *settings) error {
		if hc == nil {
			return errors.New("WithHTTPClient: nil client")
		}
		s.httpClient = hc
		return nil
	}
}

// WithRetry sets how many attempts a call makes and how long it waits
// between rounds; zero fields keep their defaults.
func WithRetry(r Retry) Option {
	return func(s *settings) error {
		s.retry = r
		return nil
	}
}

// WithRedirectLimit sets how many 307 redirects (the home_region rule's
// redirect mode) one attempt follows; default 5. With 0 a redirect comes
// back as a *RedirectError.
func WithRedirectLimit(n int) Option {
	return func(s *settings) error {
		if n < 0 {
			return errors.New("WithRedirectLimit: negative limit")
		}
		s.redirects = n
		return nil
	}
}

// WithRetryUnknownWrites retries writes whose outcome is unknown (the
// request was sent, no answer came back) like reads. Only for writes that
// may be applied twice: a repeated write is a second version with the same
// value. Under lww the result reads the same; under siblings it can show
// the value twice; a repeated delete can hide a write made between the
// two. By default such a write fails with ErrOutcomeUnknown.
func WithRetryUnknownWrites() Option {
	return func(s *settings) error {
		s.retryUnknownWrites = true
		return nil
	}
}

// WithAttemptTimeout bounds one attempt (the session wait of a read comes
// on top), so that an endpoint that does not answer is left for the next;
// default 10s, 0 for none. The call as a whole is bounded by its
// context.Context.
func WithAttemptTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d < 0 {
			return errors.New("WithAttemptTimeout: negative duration")
		}
		s.attemptTimeout = d
		return nil
	}
}

// WithWait sets X-Geo-Wait on reads that carry a session: how long a region
// may wait to catch up before answering 503 stale (then the client tries
// elsewhere). Default: the server's (sessions.default_wait, 2s).
func WithWait(d time.Duration) Option {
	return func(s *settings) error {
		s.wait = d
		return nil
	}
}

// WithResolver settles siblings: a read or write that leaves concurrent
// values calls r and writes its result back with the causal context that
// covers them all, so they go away (see Resolver).
func WithResolver(r Resolver) Option {
	return func(s *settings) error {
		s.resolver = r
		return nil
	}
}

// WithoutTracking makes a stateless client: it keeps no causal contexts
// and no session, and each call carries only the tokens given to it
// (CausalContext, Session). For tools and test drivers that manage tokens
// themselves.
func WithoutTracking() Option {
	return func(s *settings) error {
		s.track = false
		return nil
	}
}

// WithContextCache sets how many keys' causal contexts the client keeps
// (least recently used dropped first); default 10000. A key whose context
// was dropped is written without one, like a first write.
func WithContextCache(keys int) Option {
	return func(s *settings) error {
		if keys < 1 {
			return errors.New("WithContextCache: at least 1 key (WithoutTracking keeps none)")
		}
		s.contextCache = keys
		return nil
	}
}

// WithFailback sets how long the client stays on an endpoint it failed
// over to before trying the first endpoint again; default 30s.
func WithFailback(d time.Duration) Option {
	return func(s *settings) error {
		s.failback = d
		return nil
	}
}

// Exchange is one HTTP request the client made and what came of it, as
// WithObserver shows it.
type Exchange struct {
	Method string
	URL    string
	// Status is the answer's status code; 0 when none came (see Err).
	Status int
	// Header is the answer's header; nil when none came.
	Header http.Header
	// Err is the transport error; nil when an answer came.
	Err error
	// Duration is the time from sending to the answer's header.
	Duration time.Duration
}

// WithObserver calls f after every HTTP request the client makes (each
// attempt and each redirect), from the calling goroutine: for logging,
// tracing or metrics. f must not block.
func WithObserver(f func(Exchange)) Option {
	return func(s *settings) error {
		s.observer = f
		return nil
	}
}

// A CallOption adjusts one call.
type CallOption func(*call)

// call holds one call's options.
type call struct {
	context    string
	setContext bool
	session    string
	wait       time.Duration
	resolver   Resolver
	setResolve bool
}

// CausalContext sends token as the write's X-Geo-Context instead of the
// context the client kept for the key ("" writes without one).
func CausalContext(token string) CallOption {
	return func(c *call) { c.context, c.setContext = token, true }
}

// Session joins token (from another client or process) into the session
// this call carries.
func Session(token string) CallOption {
	return func(c *call) { c.session = token }
}

// Wait sets this read's X-Geo-Wait (see WithWait).
func Wait(d time.Duration) CallOption {
	return func(c *call) { c.wait = d }
}

// Resolve uses r for this call's siblings instead of the client's
// resolver; nil leaves them unresolved.
func Resolve(r Resolver) CallOption {
	return func(c *call) { c.resolver, c.setResolve = r, true }
}
