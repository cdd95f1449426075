package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"time"
)

// Retry bounds the attempts of one call.
//
// A call goes to the client's current endpoint first; after a failure that
// may be retried, the next attempt goes at once to the next endpoint, and
// once every endpoint was tried the client waits before the next round: a
// random time between 0 and min(MaxDelay, BaseDelay * 2^round) ("full
// jitter"), so that many clients do not come back in step.
type Retry struct {
	// MaxAttempts is the most attempts one call makes, redirects not
	// counted; 1 disables retries. Default 5.
	MaxAttempts int
	// BaseDelay is the wait before the second round. Default 50ms.
	BaseDelay time.Duration
	// MaxDelay caps every wait. Default 2s.
	MaxDelay time.Duration
}

func (r Retry) withDefaults() Retry {
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 5
	}
	if r.BaseDelay <= 0 {
		r.BaseDelay = 50 * time.Millisecond
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = 2 * time.Second
	}
	r.MaxDelay = max(r.MaxDelay, r.BaseDelay)
	return r
}

// delay is the wait before attempt (0-based) of a call over n endpoints,
// given a uniform random number in [0, 1): none while endpoints of the
// first round remain, or between endpoints of one round; before each later
// round a jittered exponential backoff.
func (r Retry) delay(attempt, n int, random float64) time.Duration {
	if attempt == 0 || attempt%n != 0 {
		return 0
	}
	round := attempt/n - 1
	ceiling := r.MaxDelay
	if round < 30 {
		if d := r.BaseDelay << round; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(random * float64(ceiling))
}

// verdict is what a call does after one attempt.
type verdict int

const (
	// final: hand the answer (success or error) to the caller.
	final verdict = iota
	// retry at the next endpoint.
	retry
	// unknown: a write's outcome is unknown; stop and say so.
	unknown
)

// retryableCodes are the error answers after which another attempt, at
// another endpoint or later, may succeed, and which the server sends
// before applying anything (but see HomeUnreachableError).
var retryableCodes = map[string]bool{
	CodeShuttingDown:        true,
	CodeHomeUnreachable:     true,
	CodeStale:               true,
	CodeStaleContext:        true,
	CodeClockSkew:           true,
	CodeInsufficientStorage: true,
	CodeStorageFailed:       true,
	CodeCorruptRecord:       true,
	CodeNoLeader:            true,
	CodeNotLeader:           true,
	CodeNodeSeeding:         true,
}

// answerVerdict classifies an answer. Writes are retried only after the
// answers the API sends for writes it did not apply; reads also after a
// proxy's 502/503/504.
func answerVerdict(status int, code string, write bool) verdict {
	if status < 400 {
		return final
	}
	if retryableCodes[code] {
		return retry
	}
	if code == CodeOutcomeUnknown {
		if write {
			return unknown
		}
		return retry
	}
	if !write && code == "" {
		switch status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return retry
		}
	}
	return final
}

// transportVerdict classifies a failed attempt that got no answer. A
// request that never left (no connection could be made) is retried, write
// or not; one that may have reached the server is retried if it is a read,
// or a write when the caller declared its writes safe to repeat; a
// certificate the client refuses is final (another try will not fix a
// configuration).
func transportVerdict(err error, write, retryUnknownWrites bool) verdict {
	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownAuthority), errors.As(err, &hostErr):
		return final
	case notSent(err), !write, retryUnknownWrites:
		return retry
	}
	return unknown
}

// notSent reports whether a transport error happened before any byte of
// the request could reach a server: the name did not resolve, the
// connection was not made, or the TLS handshake found no TLS server.
func notSent(err error) bool {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}
