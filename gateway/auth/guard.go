package auth

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a request is refused, the label of geogate_auth_failures_total.
// (TLS handshake refusals use the reasons of package pki, NATS refusals
// those of link.ServerOptions.OnRefused.)
const (
	ReasonMissing   = "missing"       // no Authorization header
	ReasonMalformed = "malformed"     // not "Bearer <token>"
	ReasonUnknown   = "unknown_token" // a token this region does not know (revoked, another deployment's)
	ReasonRole      = "role"          // a known token without the role
	ReasonPrefix    = "prefix"        // a known token outside its key prefixes
)

// Failures counts refused requests and connections by reason
// (geogate_auth_failures_total{reason}). Safe for concurrent use.
type Failures struct{ vec *prometheus.CounterVec }

// NewFailures returns a counter to register in a node's registry.
func NewFailures() *Failures {
	return &Failures{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geogate_auth_failures_total",
		Help: "Requests and connections refused for their credentials, by reason (missing, malformed, unknown_token, role, prefix, tls_*, nats_*).",
	}, []string{"reason"})}
}

// Inc counts one refusal.
func (f *Failures) Inc(reason string) { f.vec.WithLabelValues(reason).Inc() }

// Collector returns the counter for registration.
func (f *Failures) Collector() prometheus.Collector { return f.vec }

// Required returns the role a request needs, or 0 when it needs none
// (GET and HEAD /healthz and the web console's files under /ui). Reads (GET, HEAD) of keys, the key list,
// status, conflicts, the change feed and metrics need Reader; any other
// method on /v1/kv/... needs Writer; everything else (/v1/admin/..., and any
// route not listed) needs Admin. The path is cleaned first, as the router
// cleans it.
func Required(method, p string) Role {
	p = path.Clean("/" + p)
	read := method == http.MethodGet || method == http.MethodHead
	switch {
	case p == "/healthz" && read:
		return 0
	case (p == "/ui" || strings.HasPrefix(p, "/ui/")) && read:
		// The web console's files are the same in every build and hold no
		// data; everything the page shows it reads with the token it sends.
		return 0
	case p == "/v1/kv" || strings.HasPrefix(p, "/v1/kv/"):
		if read {
			return Reader
		}
		return Writer
	case read && (p == "/v1/status" || p == "/v1/conflicts" || p == "/v1/watch" || p == "/metrics"):
		return Reader
	}
	return Admin
}

// keysOf returns the keys or key prefixes a request touches, and whether
// it touches all of them (a conflict list without ?key=).
func keysOf(r *http.Request) (keys []string, all bool) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1/kv/"):
		return []string{strings.TrimPrefix(p, "/v1/kv/")}, false
	case p == "/v1/kv", p == "/v1/watch":
		return []string{r.URL.Query().Get("prefix")}, false
	case p == "/v1/conflicts":
		if k := r.URL.Query().Get("key"); k != "" {
			return []string{k}, false
		}
		return nil, true
	}
	return nil, false
}

// Guard is the HTTP middleware that admits requests with a known bearer
// token of the role the request needs. Its tokens come from a file, read
// again (at most once per CheckInterval, when a request arrives) when the
// file changes; a file that no longer parses keeps the previous tokens and
// is logged. Safe for concurrent use.
type Guard struct {
	file     string
	log      *slog.Logger
	failures *Failures

	set       atomic.Pointer[Set]
	nextCheck atomic.Int64
	now       func() time.Time // time.Now; tests move it

	mu    sync.Mutex // serialises reloads; guards stamp
	stamp os.FileInfo
}

// CheckInterval is how often, at most, a Guard looks at its tokens file:
// a token removed from the file is refused from the first request after
// this interval.
const CheckInterval = time.Second

// NewGuard reads the tokens file and returns a Guard; it fails when the
// file is missing or does not parse. Refusals are logged to log and counted
// in failures.
func NewGuard(file string, failures *Failures, log *slog.Logger) (*Guard, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{file: file, log: log, failures: failures, now: time.Now}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	set, err := readSet(file)
	if err != nil {
		return nil, err
	}
	g.stamp = fi
	g.set.Store(set)
	g.nextCheck.Store(g.now().Add(CheckInterval).UnixNano())
	return g, nil
}

func readSet(file string) (*Set, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	tokens, err := ParseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return NewSet(tokens), nil
}

// tokens returns the current set, reloading the file first if it is due
// and changed.
func (g *Guard) tokens() *Set {
	now := g.now()
	if now.UnixNano() >= g.nextCheck.Load() && g.mu.TryLock() {
		g.nextCheck.Store(now.Add(CheckInterval).UnixNano())
		g.reload()
		g.mu.Unlock()
	}
	return g.set.Load()
}

func (g *Guard) reload() {
	fi, err := os.Stat(g.file)
	if err != nil {
		g.log.Error("tokens file unreadable; keeping the tokens loaded before", "file", g.file, "err", err)
		return
	}
	if g.stamp != nil && os.SameFile(fi, g.stamp) && fi.Size() == g.stamp.Size() && fi.ModTime().Equal(g.stamp.ModTime()) {
		return
	}
	set, err := readSet(g.file)
	if err != nil {
		g.log.Error("tokens file changed but does not load; keeping the tokens loaded before", "file", g.file, "err", err)
		g.stamp = fi
		return
	}
	g.stamp = fi
	g.set.Store(set)
	g.log.Info("tokens reloaded", "file", g.file, "tokens", set.Len())
}

// Wrap returns next behind the guard: a request that needs a role
// (Required) must carry "Authorization: Bearer <token>" with a known token
// of that role or a stronger one, and, for a token limited to key
// prefixes, touch only keys under them. Otherwise it is answered
//
//	401 {"error": "...", "code": "unauthenticated"} with WWW-Authenticate: Bearer
//
// (no token, a malformed header, an unknown token), or
//
//	403 {"error": "...", "code": "forbidden"}
//
// (the token lacks the role, or the key is outside its prefixes), logged
// with the reason and counted; next never sees it.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := Required(r.Method, r.URL.Path)
		if need == 0 {
			next.ServeHTTP(w, r)
			return
		}
		secret, reason := bearer(r.Header.Values("Authorization"))
		if reason != "" {
			g.refuse(w, r, http.StatusUnauthorized, reason, "", unauthenticatedMsg[reason])
			return
		}
		tok, ok := g.tokens().Lookup(secret)
		if !ok {
			g.refuse(w, r, http.StatusUnauthorized, ReasonUnknown, "", unauthenticatedMsg[ReasonUnknown])
			return
		}
		if tok.Role < need {
			g.refuse(w, r, http.StatusForbidden, ReasonRole, tok.Name,
				fmt.Sprintf("token %q has role %s; %s %s needs %s", tok.Name, tok.Role, r.Method, r.URL.Path, need))
			return
		}
		if len(tok.Prefixes) > 0 {
			keys, all := keysOf(r)
			if all {
				g.refuse(w, r, http.StatusForbidden, ReasonPrefix, tok.Name,
					fmt.Sprintf("token %q may touch only keys under %q; name one with ?key=", tok.Name, tok.Prefixes))
				return
			}
			for _, k := range keys {
				if !tok.Allows(k) {
					g.refuse(w, r, http.StatusForbidden, ReasonPrefix, tok.Name,
						fmt.Sprintf("token %q may touch only keys under %q, not %q", tok.Name, tok.Prefixes, k))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

var unauthenticatedMsg = map[string]string{
	ReasonMissing:   "this region requires a bearer token: send Authorization: Bearer <token>",
	ReasonMalformed: "malformed Authorization header: send Authorization: Bearer <token>",
	ReasonUnknown:   "unknown or revoked token (is it from another deployment?)",
}

// bearer extracts the token of an Authorization header, or the reason it
// cannot: ReasonMissing or ReasonMalformed.
func bearer(values []string) (string, string) {
	switch len(values) {
	case 0:
		return "", ReasonMissing
	case 1:
	default:
		return "", ReasonMalformed
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ReasonMalformed
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || len(token) > 512 {
		return "", ReasonMalformed
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		// RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", then "="*.
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=') {
			return "", ReasonMalformed
		}
	}
	return token, ""
}

func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, status int, reason, token, msg string) {
	g.failures.Inc(reason)
	g.log.Warn("request refused", "reason", reason, "status", status, "method", r.Method, "path", r.URL.Path,
		"remote", r.RemoteAddr, "token", token)
	code := "forbidden"
	if status == http.StatusUnauthorized {
		code = "unauthenticated"
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code}) //nolint:errcheck // client gone
}
