package auth

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"pgregory.net/rapid"
)

func TestParseTokensRoundTrip(t *testing.T) {
	var tokens []Token
	for _, r := range []Role{Admin, Writer, Reader} {
		tok, secret, err := NewToken(r.String(), r)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, SecretPrefix) || len(secret) != len(SecretPrefix)+43 {
			t.Fatalf("secret %q", secret)
		}
		if HashSecret(secret) != hexOf(tok.Hash) {
			t.Fatal("HashSecret disagrees with NewToken")
		}
		tokens = append(tokens, tok)
	}
	tokens[2].Prefixes = []string{"user/", "a: b"}
	got, err := ParseTokens(FormatTokens(tokens))
	if err != nil {
		t.Fatalf("%v\n%s", err, FormatTokens(tokens))
	}
	if len(got) != 3 || got[2].Prefixes[1] != "a: b" || got[0].Role != Admin || got[1].Hash != tokens[1].Hash {
		t.Fatalf("round trip: %+v", got)
	}
}

func hexOf(h [32]byte) string {
	var b strings.Builder
	for _, c := range h {
		b.WriteString(string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15]))
	}
	return b.String()
}

func TestParseTokensErrors(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, c := range []struct{ yaml, want string }{
		{"", "no tokens"},
		{"tokens: []", "no tokens"},
		{"tokens: [{role: admin, sha256: " + h + "}]", "name is required"},
		{"tokens: [{name: a, role: root, sha256: " + h + "}]", `role "root"`},
		{"tokens: [{name: a, role: admin, sha256: abc}]", "64 hex digits"},
		{"tokens: [{name: a, role: admin, sha256: " + h + "}, {name: a, role: reader, sha256: " + strings.Repeat("cd", 32) + "}]", "used twice"},
		{"tokens: [{name: a, role: admin, sha256: " + h + "}, {name: b, role: reader, sha256: " + h + "}]", "same secret"},
		{"tokens: [{name: a, role: admin, sha256: " + h + ", prefixes: ['']}]", "empty prefix"},
		{"tokens: [{name: a, role: admin, sha256: " + h + ", secret: x}]", "field secret not found"},
		{"tokens: [{name: a", "tokens file"},
	} {
		_, err := ParseTokens([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseTokens(%q) = %v, want an error with %q", c.yaml, err, c.want)
		}
	}
}

func TestRequired(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         Role
	}{
		{"GET", "/healthz", 0}, {"HEAD", "/healthz", 0}, {"POST", "/healthz", Admin},
		{"GET", "/v1/kv/a/b", Reader}, {"HEAD", "/v1/kv/a", Reader}, {"GET", "/v1/kv", Reader},
		{"PUT", "/v1/kv/a", Writer}, {"DELETE", "/v1/kv/a", Writer}, {"POST", "/v1/kv/a", Writer},
		{"GET", "/v1/status", Reader}, {"GET", "/v1/conflicts", Reader}, {"GET", "/v1/watch", Reader},
		{"GET", "/metrics", Reader}, {"POST", "/metrics", Admin},
		{"POST", "/v1/admin/links/x/pause", Admin}, {"GET", "/v1/admin/anything", Admin},
		{"GET", "/v1/kv/../admin/links/x/pause", Admin}, {"GET", "/nowhere", Admin}, {"GET", "//healthz", 0},
		{"GET", "/ui", 0}, {"GET", "/ui/console.js", 0}, {"HEAD", "/ui/", 0}, {"POST", "/ui/x", Admin},
		{"GET", "/ui/../v1/status", Reader}, {"GET", "/uix", Admin},
	} {
		if got := Required(c.method, c.path); got != c.want {
			t.Errorf("Required(%s %s) = %v, want %v", c.method, c.path, got, c.want)
		}
	}
}

// fixture is a guard over a tokens file with one token per role plus a
// prefix-limited writer, in front of a handler that answers 200.
type fixture struct {
	file     string
	secrets  map[string]string
	failures *Failures
	guard    *Guard
	handler  http.Handler
	logs     *bytes.Buffer
	reached  int
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{file: filepath.Join(t.TempDir(), "tokens.yaml"), secrets: map[string]string{}, failures: NewFailures(), logs: &bytes.Buffer{}}
	var tokens []Token
	for _, spec := range []struct {
		name     string
		role     Role
		prefixes []string
	}{{"admin", Admin, nil}, {"writer", Writer, nil}, {"reader", Reader, nil}, {"users", Writer, []string{"user/"}}} {
		tok, secret, err := NewToken(spec.name, spec.role, spec.prefixes...)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
		f.secrets[spec.name] = secret
	}
	if err := os.WriteFile(f.file, FormatTokens(tokens), 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(f.file, f.failures, slog.New(slog.NewTextHandler(f.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	f.guard = g
	f.handler = g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		f.reached++
		w.WriteHeader(http.StatusOK)
	}))
	return f
}

func (f *fixture) do(method, target string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	return w
}

func (f *fixture) count(reason string) float64 {
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.failures.Collector())
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func code(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct{ Code, Error string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	return body.Code
}

func TestGuardAnswers(t *testing.T) {
	f := newFixture(t)
	bearer := func(name string) []string { return []string{"Authorization", "Bearer " + f.secrets[name]} }
	cases := []struct {
		name         string
		method, path string
		header       []string
		status       int
		reason       string
	}{
		{"healthz open", "GET", "/healthz", nil, 200, ""},
		{"no token", "GET", "/v1/kv/a", nil, 401, ReasonMissing},
		{"basic auth", "GET", "/v1/kv/a", []string{"Authorization", "Basic YTpi"}, 401, ReasonMalformed},
		{"bearer without token", "GET", "/v1/kv/a", []string{"Authorization", "Bearer"}, 401, ReasonMalformed},
		{"two words", "GET", "/v1/kv/a", []string{"Authorization", "Bearer a b"}, 401, ReasonMalformed},
		{"binary garbage", "GET", "/v1/kv/a", []string{"Authorization", "Bearer \x00\xff\xfe"}, 401, ReasonMalformed},
		{"two headers", "GET", "/v1/kv/a", append(bearer("admin"), bearer("admin")...), 401, ReasonMalformed},
		{"huge token", "GET", "/v1/kv/a", []string{"Authorization", "Bearer " + strings.Repeat("x", 10000)}, 401, ReasonMalformed},
		{"unknown token", "GET", "/v1/kv/a", []string{"Authorization", "Bearer ggt_nope"}, 401, ReasonUnknown},
		{"lower-case scheme", "GET", "/v1/kv/a", []string{"Authorization", "bearer " + f.secrets["reader"]}, 200, ""},
		{"reader reads", "GET", "/v1/kv/a", bearer("reader"), 200, ""},
		{"reader lists", "GET", "/v1/kv?prefix=a", bearer("reader"), 200, ""},
		{"reader metrics", "GET", "/metrics", bearer("reader"), 200, ""},
		{"reader writes", "PUT", "/v1/kv/a", bearer("reader"), 403, ReasonRole},
		{"reader deletes", "DELETE", "/v1/kv/a", bearer("reader"), 403, ReasonRole},
		{"writer writes", "PUT", "/v1/kv/a", bearer("writer"), 200, ""},
		{"writer pauses", "POST", "/v1/admin/links/x/pause", bearer("writer"), 403, ReasonRole},
		{"admin pauses", "POST", "/v1/admin/links/x/pause", bearer("admin"), 200, ""},
		{"prefix token inside", "PUT", "/v1/kv/user/1", bearer("users"), 200, ""},
		{"prefix token outside", "PUT", "/v1/kv/cart/1", bearer("users"), 403, ReasonPrefix},
		{"prefix token lists inside", "GET", "/v1/kv?prefix=user/9", bearer("users"), 200, ""},
		{"prefix token lists everything", "GET", "/v1/kv", bearer("users"), 403, ReasonPrefix},
		{"prefix token watches outside", "GET", "/v1/watch?prefix=cart/", bearer("users"), 403, ReasonPrefix},
		{"prefix token all conflicts", "GET", "/v1/conflicts", bearer("users"), 403, ReasonPrefix},
		{"prefix token conflicts of a key", "GET", "/v1/conflicts?key=user/1", bearer("users"), 200, ""},
		{"prefix token status", "GET", "/v1/status", bearer("users"), 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, reached := f.count(c.reason), f.reached
			w := f.do(c.method, c.path, c.header...)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			switch c.status {
			case 200:
				if f.reached != reached+1 {
					t.Fatal("the handler was not reached")
				}
				return
			case 401:
				if code(t, w) != "unauthenticated" || w.Header().Get("WWW-Authenticate") != "Bearer" {
					t.Fatalf("401 body %s, WWW-Authenticate %q", w.Body, w.Header().Get("WWW-Authenticate"))
				}
			case 403:
				if code(t, w) != "forbidden" {
					t.Fatalf("403 body %s", w.Body)
				}
			}
			if f.reached != reached {
				t.Fatal("a refused request reached the handler")
			}
			if f.count(c.reason) != before+1 {
				t.Fatalf("geogate_auth_failures_total{reason=%q} did not grow", c.reason)
			}
			if !strings.Contains(f.logs.String(), "reason="+c.reason) {
				t.Fatalf("no log line with reason %s: %s", c.reason, f.logs)
			}
		})
	}
	if strings.Contains(f.logs.String(), f.secrets["users"]) {
		t.Fatal("a secret was logged")
	}
}

// TestGuardRoleProperty: for any route and any token, the guard admits a
// request exactly when the token's role is at least the route's.
func TestGuardRoleProperty(t *testing.T) {
	f := newFixture(t)
	rapid.Check(t, func(t *rapid.T) {
		method := rapid.SampledFrom([]string{"GET", "HEAD", "PUT", "DELETE", "POST"}).Draw(t, "method")
		path := rapid.SampledFrom([]string{"/v1/kv/k", "/v1/kv", "/v1/status", "/v1/conflicts", "/metrics", "/v1/admin/links/a/pause", "/healthz", "/x"}).Draw(t, "path")
		who := rapid.SampledFrom([]string{"admin", "writer", "reader", "none"}).Draw(t, "token")
		var hdr []string
		role := Role(0)
		if who != "none" {
			hdr = []string{"Authorization", "Bearer " + f.secrets[who]}
			role, _ = ParseRole(who)
		}
		w := f.do(method, path, hdr...)
		need := Required(method, path)
		want := 200
		switch {
		case need == 0:
		case who == "none":
			want = 401
		case role < need:
			want = 403
		}
		if w.Code != want {
			t.Fatalf("%s %s as %s: %d, want %d", method, path, who, w.Code, want)
		}
	})
}

// TestGuardReload: removing a token from the file revokes it within
// seconds; a file that no longer parses keeps the tokens loaded before.
func TestGuardReload(t *testing.T) {
	f := newFixture(t)
	auth := []string{"Authorization", "Bearer " + f.secrets["writer"]}
	if w := f.do("PUT", "/v1/kv/a", auth...); w.Code != 200 {
		t.Fatalf("before: %d", w.Code)
	}
	b, _ := os.ReadFile(f.file)
	tokens, _ := ParseTokens(b)
	// A broken file first: the writer still works.
	if err := os.WriteFile(f.file, []byte("tokens: [{name: "), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	f.guard.now = func() time.Time { return clock }
	clock = clock.Add(CheckInterval) // the guard's next look is due
	if w := f.do("PUT", "/v1/kv/a", auth...); w.Code != 200 {
		t.Fatalf("a broken tokens file revoked the writer: %d", w.Code)
	}
	if !strings.Contains(f.logs.String(), "does not load") {
		t.Fatalf("the broken file was not logged: %s", f.logs)
	}
	var kept []Token
	for _, tok := range tokens {
		if tok.Name != "writer" {
			kept = append(kept, tok)
		}
	}
	if err := os.WriteFile(f.file, FormatTokens(kept), 0o644); err != nil {
		t.Fatal(err)
	}
	// The file's stamp may not have changed within the file system's
	// time resolution: only the size tells. Either way, the next look
	// after CheckInterval revokes the token.
	if w := f.do("PUT", "/v1/kv/a", auth...); w.Code != 200 {
		t.Fatalf("revoked before the guard looked again: %d", w.Code)
	}
	clock = clock.Add(CheckInterval)
	if w := f.do("PUT", "/v1/kv/a", auth...); w.Code != 401 {
		t.Fatalf("the removed token still works one CheckInterval later: %d", w.Code)
	}
	if w := f.do("PUT", "/v1/kv/a", "Authorization", "Bearer "+f.secrets["admin"]); w.Code != 200 {
		t.Fatalf("the admin token stopped working: %d", w.Code)
	}
}

func BenchmarkGuard(b *testing.B) {
	f := newFixture(b)
	r := httptest.NewRequest("PUT", "/v1/kv/user/1", nil)
	r.Header.Set("Authorization", "Bearer "+f.secrets["writer"])
	w := httptest.NewRecorder()
	for b.Loop() {
		f.handler.ServeHTTP(w, r)
	}
}

// TestGuardConcurrentReload: requests from many goroutines while the file
// is rewritten and reloaded (run with -race): every answer is 200 or, once
// the token is gone, 401; never anything else.
func TestGuardConcurrentReload(t *testing.T) {
	f := newFixture(t)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	f.guard.now = func() time.Time { return time.Unix(0, clock.Load()) }
	b, _ := os.ReadFile(f.file)
	tokens, _ := ParseTokens(b)
	var wg sync.WaitGroup
	bad := make(chan int, 100)
	for range 8 {
		wg.Go(func() {
			for range 300 {
				r := httptest.NewRequest("GET", "/v1/kv/a", nil)
				r.Header.Set("Authorization", "Bearer "+f.secrets["reader"])
				w := httptest.NewRecorder()
				f.guard.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})).ServeHTTP(w, r)
				if w.Code != 200 && w.Code != 401 {
					bad <- w.Code
				}
				clock.Add(int64(CheckInterval / 50))
			}
		})
	}
	for i := range 20 {
		kept := tokens
		if i%2 == 1 {
			kept = tokens[:2] // without the reader
		}
		if err := writeAtomic(f.file, FormatTokens(kept)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(bad)
	for c := range bad {
		t.Fatalf("answer %d", c)
	}
}

// writeAtomic writes through a rename, as an operator's tool would.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
