package client

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestDelayBounds: no wait within the first round or between endpoints of
// a round; before each later round a wait within [0, min(MaxDelay,
// BaseDelay*2^round)).
func TestDelayBounds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := Retry{
			MaxAttempts: 100,
			BaseDelay:   time.Duration(rapid.Int64Range(1, int64(time.Second)).Draw(t, "base")),
			MaxDelay:    time.Duration(rapid.Int64Range(1, int64(time.Minute)).Draw(t, "max")),
		}.withDefaults()
		n := rapid.IntRange(1, 5).Draw(t, "endpoints")
		attempt := rapid.IntRange(0, 200).Draw(t, "attempt")
		random := rapid.Float64Range(0, 0.999999).Draw(t, "random")
		d := r.delay(attempt, n, random)
		if attempt%n != 0 || attempt == 0 {
			if d != 0 {
				t.Fatalf("attempt %d of %d endpoints waits %s, want 0", attempt, n, d)
			}
			return
		}
		round := attempt/n - 1
		ceiling := r.MaxDelay
		if round < 30 && r.BaseDelay<<round < ceiling {
			ceiling = r.BaseDelay << round
		}
		if d < 0 || d >= ceiling || d > r.MaxDelay {
			t.Fatalf("attempt %d (round %d) waits %s, want in [0, %s)", attempt, round, d, ceiling)
		}
		// The ceiling grows with the rounds until MaxDelay.
		if full := r.delay(attempt+n, n, 0.999999); full < time.Duration(0.999999*float64(ceiling))-1 {
			t.Fatalf("round %d ceiling %s, next round's %s: backoff shrank", round, ceiling, full)
		}
	})
}

func TestAnswerVerdict(t *testing.T) {
	for _, tt := range []struct {
		status int
		code   string
		write  bool
		want   verdict
	}{
		{200, "", true, final},
		{300, "", false, final},
		{404, CodeNotFound, false, final},
		{400, CodeBadJSON, true, final},
		{503, CodeShuttingDown, true, retry},
		{503, CodeHomeUnreachable, true, retry},
		{503, CodeStale, false, retry},
		{503, CodeStaleContext, true, retry},
		{503, CodeClockSkew, true, retry},
		{507, CodeInsufficientStorage, true, retry},
		{502, "", false, retry},
		{504, "", false, retry},
		{502, "", true, final}, // a proxy may have passed the write on
		{503, "", true, final},
		{500, CodeInternal, false, final},
		{401, CodeUnauthenticated, false, final},
		{421, CodeWrongRegion, true, final},
		{503, CodeNoLeader, true, retry},
		{503, CodeNotLeader, true, retry},
		{503, CodeNodeSeeding, false, retry},
		{503, CodeStorageFailed, false, retry},
		{503, CodeCorruptRecord, false, retry},
		{503, CodeOutcomeUnknown, true, unknown},
		{503, CodeOutcomeUnknown, false, retry},
	} {
		if got := answerVerdict(tt.status, tt.code, tt.write); got != tt.want {
			t.Errorf("answerVerdict(%d, %q, write=%v) = %v, want %v", tt.status, tt.code, tt.write, got, tt.want)
		}
	}
}

// TestTransportVerdict with real transport errors: a refused connection
// never sent anything; a hang-up after the request did.
func TestTransportVerdict(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.ReadAtLeast(c, make([]byte, 1), 1) //nolint:errcheck // take the request
			c.Close()
		}
	}()
	_, hangup := http.Post("http://"+addr+"/v1/kv/k", "application/json", nil) //nolint:bodyclose // no body on error
	l.Close()
	if hangup == nil {
		t.Fatal("no error from a server that hung up")
	}
	_, refused := http.Get("http://" + addr + "/") //nolint:bodyclose // no body on error
	if refused == nil {
		t.Fatal("no error from a closed port")
	}
	for _, tt := range []struct {
		name                string
		err                 error
		write, retryUnknown bool
		want                verdict
	}{
		{"refused write", refused, true, false, retry},
		{"refused read", refused, false, false, retry},
		{"hang-up read", hangup, false, false, retry},
		{"hang-up write", hangup, true, false, unknown},
		{"hang-up write, declared safe", hangup, true, true, retry},
		{"certificate", &tls.CertificateVerificationError{Err: errors.New("x509: unknown authority")}, false, false, final},
		{"timeout write", errors.New("context deadline exceeded (Client.Timeout exceeded)"), true, false, unknown},
	} {
		if got := transportVerdict(tt.err, tt.write, tt.retryUnknown); got != tt.want {
			t.Errorf("%s (%v): %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
