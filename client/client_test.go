package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/rules"
)

var bg = context.Background()

// TestReadYourWritesAcrossRegions: a client writes at r1, r1 goes away,
// and the client's next read goes to r2, which has not applied the write
// yet. Without a session r2 answers 404; the client's session makes r2
// wait (503 stale, retried) until it has the write, with no effort from the
// caller.
func TestReadYourWritesAcrossRegions(t *testing.T) {
	// A star: r1's events reach r2 through the hub, also while r1 is down.
	c := startRegions(t, []string{"hub", "r1", "r2"}, "star", nil)
	r1, r2 := urlOf(c, "r1"), urlOf(c, "r2")
	admin := newClient(t, []string{r2})
	if _, err := admin.PauseLink(bg, "hub"); err != nil {
		t.Fatal(err)
	}

	rec := newRecorder()
	app := newClient(t, []string{r1, r2}, client.WithHTTPClient(&http.Client{Transport: rec}),
		client.WithWait(100*time.Millisecond), client.WithRetry(client.Retry{MaxAttempts: 200, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond}))
	w, err := app.Put(bg, "user/1", map[string]string{"name": "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(w.Dot, "r1~") || app.Session() == "" {
		t.Fatalf("write answer %+v, session %q: want a write made by r1 and a session", w, app.Session())
	}
	// The hub has it (a read there with the session waits for it), then r1
	// stops.
	hub := newClient(t, []string{urlOf(c, "hub")}, client.WithoutTracking())
	if _, err := hub.Get(bg, "user/1", client.Session(app.Session()), client.Wait(10*time.Second)); err != nil {
		t.Fatalf("hub: %v", err)
	}
	if err := c.Stop("r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := stateless(t, r2).Get(bg, "user/1"); !client.IsNotFound(err) {
		t.Fatalf("r2 before its link resumes, without a session: err %v, want not found", err)
	}

	// Resume r2's link once r2 has answered the client 503 stale.
	resumed := make(chan error, 1)
	var once bool
	rec.on = func(ex exchange) {
		if ex.status == http.StatusServiceUnavailable && strings.HasPrefix(ex.url, r2) && !once {
			once = true
			go func() { _, err := admin.ResumeLink(bg, "hub"); resumed <- err }()
		}
	}
	v, err := app.Get(bg, "user/1")
	if err != nil {
		t.Fatalf("read after failover: %v", err)
	}
	if err := <-resumed; err != nil {
		t.Fatal(err)
	}
	var doc map[string]string
	if err := v.Decode(&doc); err != nil || doc["name"] != "Ada" {
		t.Fatalf("read %s (%v), want the write", v.Data, err)
	}
	if n := rec.count(r1, func(ex exchange) bool { return ex.method == "GET" && ex.err != nil }); n == 0 {
		t.Fatal("the read never tried r1")
	}
	if n := rec.count(r2, func(ex exchange) bool { return ex.status == http.StatusServiceUnavailable }); n == 0 {
		t.Fatal("r2 never answered stale: the test did not test the session")
	}
	if app.Endpoint() != r2 {
		t.Fatalf("client goes to %s first, want r2 (%s), which answered", app.Endpoint(), r2)
	}

	// The session also crosses processes: a client elsewhere that takes it
	// reads the write as well.
	other := newClient(t, []string{r2})
	if err := other.SetSession(app.Session()); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Get(bg, "user/1"); err != nil {
		t.Fatal(err)
	}
}

// TestContextCarriedPerKey: under a siblings rule a write without context
// is concurrent with what is there; the client sends the context it last
// read or wrote for that key, so its writes supersede what it has seen and
// only that.
func TestContextCarriedPerKey(t *testing.T) {
	c := startRegions(t, []string{"r1"}, "all-to-all", allSiblings())
	u := urlOf(c, "r1")
	app, blind := newClient(t, []string{u}), stateless(t, u)

	// The same two writes: the client's second supersedes its first; blind
	// ones stay siblings.
	for _, k := range []string{"a", "b"} {
		cl := app
		if k == "b" {
			cl = blind
		}
		for i := 1; i <= 2; i++ {
			if _, err := cl.Put(bg, k, i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v, err := blind.Get(bg, "a"); err != nil || string(v.Data) != "2" {
		t.Fatalf("client's writes: %+v %v, want 2 alone", v, err)
	}
	if v, err := blind.Get(bg, "b"); err != nil || len(v.Siblings) != 2 {
		t.Fatalf("blind writes: %+v %v, want two siblings", v, err)
	}

	// Contexts are per key.
	if _, err := app.Put(bg, "x", 1); err != nil {
		t.Fatal(err)
	}
	if app.Context("x") == "" || app.Context("x") == app.Context("a") {
		t.Fatalf("contexts of x %q and a %q: want one of x's own", app.Context("x"), app.Context("a"))
	}

	// From the last read: someone else writes a concurrently; the client
	// reads both siblings, and its next write supersedes both.
	if _, err := blind.Put(bg, "a", 3); err != nil {
		t.Fatal(err)
	}
	v, err := app.Get(bg, "a")
	if err != nil || len(v.Siblings) != 2 || !errors.Is(v.Decode(new(any)), client.ErrSiblings) {
		t.Fatalf("client read: %+v %v, want siblings 2 and 3", v, err)
	}
	if _, err := app.Put(bg, "a", 4); err != nil {
		t.Fatal(err)
	}
	if v, err := blind.Get(bg, "a"); err != nil || string(v.Data) != "4" {
		t.Fatalf("after a write with the read's context: %+v %v, want 4 alone", v, err)
	}
	// A delete carries it too: no sibling survives it.
	if _, err := app.Delete(bg, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := blind.Get(bg, "a"); !client.IsNotFound(err) {
		t.Fatalf("after delete: %v, want not found", err)
	}
	// An explicit context overrides the kept one: CausalContext("") writes
	// blind, so the value stays beside x's.
	if _, err := app.Put(bg, "x", 2, client.CausalContext("")); err != nil {
		t.Fatal(err)
	}
	if v, err := blind.Get(bg, "x"); err != nil || len(v.Siblings) != 2 {
		t.Fatalf("blind write by choice: %+v %v, want two siblings", v, err)
	}
}

// union is a resolver: the union of the siblings' arrays, sorted.
func union(_ context.Context, _ string, siblings []json.RawMessage) (any, error) {
	var all []string
	for _, s := range siblings {
		var items []string
		if err := json.Unmarshal(s, &items); err != nil {
			return nil, err
		}
		for _, it := range items {
			if !slices.Contains(all, it) {
				all = append(all, it)
			}
		}
	}
	slices.Sort(all)
	return all, nil
}

// TestResolverWritesBack: siblings made in two regions are settled by the
// client's resolver, written back with the context that covers them, and
// go away in every region.
func TestResolverWritesBack(t *testing.T) {
	c := startRegions(t, []string{"r1", "r2"}, "all-to-all", allSiblings())
	r1, r2 := stateless(t, urlOf(c, "r1")), stateless(t, urlOf(c, "r2"))
	if _, err := r1.Put(bg, "cart/1", []string{"milk"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Put(bg, "cart/1", []string{"eggs"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "siblings in both regions", func() bool {
		a, err1 := r1.Get(bg, "cart/1")
		b, err2 := r2.Get(bg, "cart/1")
		return err1 == nil && err2 == nil && len(a.Siblings) == 2 && len(b.Siblings) == 2
	})

	app := newClient(t, []string{urlOf(c, "r1")}, client.WithResolver(union))
	v, err := app.Get(bg, "cart/1")
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Data) != `["eggs","milk"]` || v.HasSiblings() || v.WriteBack == nil || v.Context != v.WriteBack.Context {
		t.Fatalf("resolved read %+v", v)
	}
	for name, r := range map[string]*client.Client{"r1": r1, "r2": r2} {
		eventually(t, 10*time.Second, "the resolved value alone at "+name, func() bool {
			v, err := r.Get(bg, "cart/1")
			return err == nil && string(v.Data) == `["eggs","milk"]`
		})
	}

	// A write that meets a sibling is settled too.
	if _, err := r1.Put(bg, "cart/2", []string{"tea"}); err != nil {
		t.Fatal(err)
	}
	w, err := app.Put(bg, "cart/2", []string{"jam"})
	if err != nil || len(w.Siblings) != 0 {
		t.Fatalf("resolved write %+v %v", w, err)
	}
	if v, err := r1.Get(bg, "cart/2"); err != nil || string(v.Data) != `["jam","tea"]` {
		t.Fatalf("after the resolved write: %+v %v", v, err)
	}

	// Without a resolver for the call, siblings come back as they are.
	if _, err := r1.Put(bg, "cart/2", []string{"rum"}); err != nil {
		t.Fatal(err)
	}
	if v, err := app.Get(bg, "cart/2", client.Resolve(nil)); err != nil || len(v.Siblings) != 2 || v.WriteBack != nil {
		t.Fatalf("unresolved read %+v %v", v, err)
	}
	// A resolver that fails leaves them, and says why.
	boom := errors.New("boom")
	fail := func(context.Context, string, []json.RawMessage) (any, error) { return nil, boom }
	if v, err := app.Get(bg, "cart/2", client.Resolve(fail)); !errors.Is(err, boom) || len(v.Siblings) != 2 {
		t.Fatalf("failing resolver: %+v %v", v, err)
	}
}

// TestFailover: with the first endpoint down, reads and writes go to the
// second (a write that could not be sent is safe to send elsewhere), and
// the client stays there.
func TestFailover(t *testing.T) {
	c := startRegions(t, []string{"r1", "r2"}, "all-to-all", nil)
	r1, r2 := urlOf(c, "r1"), urlOf(c, "r2")
	if err := c.Stop("r1"); err != nil {
		t.Fatal(err)
	}
	app := newClient(t, []string{r1, r2})
	w, err := app.Put(bg, "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(w.Dot, "r2~") {
		t.Fatalf("write %+v: want it made by r2", w)
	}
	if app.Endpoint() != r2 {
		t.Fatalf("next call goes to %s, want %s", app.Endpoint(), r2)
	}
	if st, err := app.Status(bg); err != nil || st.Region != "r2" {
		t.Fatalf("status %+v %v", st, err)
	}
	// With one attempt there is no second endpoint to go to.
	once := newClient(t, []string{r1, r2}, client.WithRetry(client.Retry{MaxAttempts: 1}))
	if _, err := once.Get(bg, "k"); err == nil {
		t.Fatal("read at a stopped region succeeded")
	}
}

// brokenRegion accepts connections, reads a request's head and hangs up
// without answering: a region that dies while handling the request.
func brokenRegion(t *testing.T) string {
	t.Helper()
	l, err := newLoopbackListener()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			conn.Read(buf) //nolint:errcheck // only to take the request
			conn.Close()
		}
	}()
	return "http://" + l.Addr().String()
}

// silentRegion accepts connections and never answers.
func silentRegion(t *testing.T) string {
	t.Helper()
	l, err := newLoopbackListener()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() { <-done; conn.Close() }()
		}
	}()
	return "http://" + l.Addr().String()
}

// TestUnknownOutcome: a write sent to an endpoint that hangs up without
// answering may have been applied, so it is not repeated elsewhere unless
// the caller said its writes are safe to repeat; a read is.
func TestUnknownOutcome(t *testing.T) {
	c := startRegions(t, []string{"r2"}, "all-to-all", nil)
	r2 := urlOf(c, "r2")
	broken := brokenRegion(t)
	if _, err := stateless(t, r2).Put(bg, "there", 1); err != nil {
		t.Fatal(err)
	}

	app := newClient(t, []string{broken, r2})
	_, err := app.Put(bg, "k", 1)
	if !errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("write to a region that hung up: %v, want ErrOutcomeUnknown", err)
	}
	if _, err := stateless(t, r2).Get(bg, "k"); !client.IsNotFound(err) {
		t.Fatalf("the write was repeated at r2: %v", err)
	}
	if v, err := app.Get(bg, "there"); err != nil || string(v.Data) != "1" {
		t.Fatalf("read after a hang-up: %+v %v, want it retried at r2", v, err)
	}

	// A region that takes the request and never answers: when the call's
	// deadline ends it, the write's outcome is unknown too.
	silent := silentRegion(t)
	ctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
	defer cancel()
	_, err = newClient(t, []string{silent, r2}).Put(ctx, "k", 1)
	if !errors.Is(err, client.ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write cut by its deadline: %v, want ErrOutcomeUnknown and DeadlineExceeded", err)
	}

	brave := newClient(t, []string{broken, r2}, client.WithRetryUnknownWrites())
	if w, err := brave.Put(bg, "k", 2); err != nil || !strings.HasPrefix(w.Dot, "r2~") {
		t.Fatalf("write with WithRetryUnknownWrites: %+v %v, want it made at r2", w, err)
	}
}

// answeringRegion is an endpoint that answers every request with status
// and the API's error body of code, as a node of a region of several
// nodes answers during an election.
func answeringRegion(t *testing.T, status int, code string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":"%s right now","code":%q}`, code, code)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestNodeAnswers: the answers a region of several nodes gives while it
// has no leader (no_leader, not_leader, node_seeding) are retried at the
// next endpoint, writes included (nothing was applied); outcome_unknown is
// ErrOutcomeUnknown for a write (typed OutcomeUnknownError), repeated
// only under WithRetryUnknownWrites.
func TestNodeAnswers(t *testing.T) {
	c := startRegions(t, []string{"r2"}, "all-to-all", nil)
	r2 := urlOf(c, "r2")
	for _, code := range []string{client.CodeNoLeader, client.CodeNotLeader, client.CodeNodeSeeding} {
		app := newClient(t, []string{answeringRegion(t, http.StatusServiceUnavailable, code), r2})
		if w, err := app.Put(bg, "n/"+code, 1); err != nil || !strings.HasPrefix(w.Dot, "r2~") {
			t.Fatalf("write after %s: %+v %v, want it made at r2", code, w, err)
		}
	}
	unknownAt := answeringRegion(t, http.StatusServiceUnavailable, client.CodeOutcomeUnknown)
	_, err := newClient(t, []string{unknownAt, r2}).Put(bg, "u", 1)
	var oe *client.OutcomeUnknownError
	if !errors.Is(err, client.ErrOutcomeUnknown) || !errors.As(err, &oe) {
		t.Fatalf("write answered outcome_unknown: %v, want ErrOutcomeUnknown as *OutcomeUnknownError", err)
	}
	if _, err := stateless(t, r2).Get(bg, "u"); !client.IsNotFound(err) {
		t.Fatalf("the write was repeated at r2: %v", err)
	}
	brave := newClient(t, []string{unknownAt, r2}, client.WithRetryUnknownWrites())
	if w, err := brave.Put(bg, "u", 2); err != nil || !strings.HasPrefix(w.Dot, "r2~") {
		t.Fatalf("write with WithRetryUnknownWrites after outcome_unknown: %+v %v, want it made at r2", w, err)
	}
}

// TestRedirects: a home_region rule in redirect mode answers 307 with the
// home's URL; the client repeats the write there, body and tokens
// included. With redirects off, and in reject mode, the answers come back
// typed with the home region.
func TestRedirects(t *testing.T) {
	specs := []rules.Spec{
		{Name: "redir", Match: `key startsWith "d/"`, Strategy: "home_region", Home: `"r2"`, HomeMode: "redirect"},
		{Name: "rej", Match: `key startsWith "j/"`, Strategy: "home_region", Home: `"r2"`, HomeMode: "reject"},
		{Name: "default", Match: "true", Strategy: "lww"},
	}
	c := startRegions(t, []string{"r1", "r2"}, "all-to-all", specs)
	r1, r2 := urlOf(c, "r1"), urlOf(c, "r2")
	rec := newRecorder()
	app := newClient(t, []string{r1}, client.WithHTTPClient(&http.Client{Transport: rec}))
	for i := range 2 {
		w, err := app.Put(bg, "d/1", map[string]int{"v": i})
		if err != nil || !strings.HasPrefix(w.Dot, "r2~") {
			t.Fatalf("redirected write %d: %+v %v, want it made by r2", i, w, err)
		}
	}
	if n := rec.count(r1, func(ex exchange) bool { return ex.status == http.StatusTemporaryRedirect }); n != 2 {
		t.Fatalf("%d redirects from r1, want 2", n)
	}
	// The second write carried the first's context: one version at r2.
	if m, err := stateless(t, r2).Meta(bg, "d/1"); err != nil || len(m.Versions) != 1 || string(m.Versions[0].Value) != `{"v":1}` {
		t.Fatalf("meta at the home %+v %v", m, err)
	}

	stay := newClient(t, []string{r1}, client.WithRedirectLimit(0))
	_, err := stay.Put(bg, "d/2", 1)
	var re *client.RedirectError
	if !errors.As(err, &re) || re.Home != "r2" || !strings.HasPrefix(re.URL, r2+"/v1/kv/d") || re.Status != 307 {
		t.Fatalf("redirect not followed: %v", err)
	}
	_, err = app.Put(bg, "j/1", 1)
	var wr *client.WrongRegionError
	if !errors.As(err, &wr) || wr.Home != "r2" || wr.Status != 421 {
		t.Fatalf("reject mode: %v", err)
	}
}

// TestTypedErrors: each error answer comes back as its own type, and as an
// *APIError with status and code.
func TestTypedErrors(t *testing.T) {
	c := startRegions(t, []string{"r1"}, "all-to-all", nil, func(s *gateway.ClusterSpec) {
		s.Tune = func(c *config.Config) { c.HTTP.MaxValueBytes = 64 }
	})
	app := newClient(t, []string{urlOf(c, "r1")})
	check := func(name string, err error, target any, status int, code string) {
		t.Helper()
		if !errors.As(err, target) {
			t.Errorf("%s: %v (%T), want %T", name, err, err, target)
			return
		}
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != status || ae.Code != code || ae.Message == "" || ae.Endpoint != urlOf(c, "r1") {
			t.Errorf("%s: APIError %+v, want %d %s from r1", name, ae, status, code)
		}
	}
	_, err := app.Put(bg, "k", json.RawMessage(`{"a":`))
	check("bad JSON", err, new(*client.BadJSONError), 400, "bad_json")
	_, err = app.Put(bg, strings.Repeat("k", 1025), 1)
	check("long key", err, new(*client.BadKeyError), 400, "bad_key")
	_, err = app.Put(bg, "k", strings.Repeat("x", 100))
	check("large value", err, new(*client.TooLargeError), 413, "too_large")
	_, err = app.Get(bg, "missing")
	check("missing key", err, new(*client.NotFoundError), 404, "not_found")
	_, err = app.List(bg, client.ListQuery{Limit: 20000})
	check("limit", err, new(*client.BadLimitError), 400, "bad_limit")
	_, err = app.PauseLink(bg, "nobody")
	check("link", err, new(*client.NoLinkError), 404, "no_link")
	_, err = app.Put(bg, "k", 1, client.CausalContext("not-a-token"))
	check("context", err, new(*client.BadContextError), 400, "bad_context")
	_, err = app.Get(bg, "k", client.Session("not-a-token"))
	check("session", err, new(*client.BadSessionError), 400, "bad_session")
	var nf *client.NotFoundError
	if errors.As(err, &nf) {
		t.Fatalf("one code taken for another: %v", err)
	}
}

// TestUnknownCode: an answer with a code this client does not know keeps
// its status, code and message.
func TestUnknownCode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte(`{"error":"short and stout","code":"teapot","spout":true}`)) //nolint:errcheck
	}))
	t.Cleanup(srv.Close)
	_, err := newClient(t, []string{srv.URL}).Get(bg, "k")
	ae, ok := err.(*client.APIError)
	if !ok || ae.Status != 418 || ae.Code != "teapot" || ae.Message != "short and stout" || !strings.Contains(string(ae.Body), "spout") {
		t.Fatalf("unknown code: %#v", err)
	}
}

// TestCancellation: canceling a call ends it at once, during a session
// wait at the server and during a backoff wait.
func TestCancellation(t *testing.T) {
	c := startRegions(t, []string{"r1", "r2"}, "all-to-all", nil)
	r1, r2 := urlOf(c, "r1"), urlOf(c, "r2")
	if _, err := newClient(t, []string{r2}).PauseLink(bg, "r1"); err != nil {
		t.Fatal(err)
	}
	writer := newClient(t, []string{r1})
	if _, err := writer.Put(bg, "k", 1); err != nil {
		t.Fatal(err)
	}
	reader := newClient(t, []string{r2}, client.WithWait(30*time.Second))
	if err := reader.SetSession(writer.Session()); err != nil {
		t.Fatal(err)
	}
	// r2 cannot catch up (its link is paused) and would wait 30 s.
	ctx, cancel := context.WithTimeout(bg, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := reader.Get(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("read past its deadline returned after %s: it waited for the server", d)
	}

	down := newClient(t, []string{brokenPort(t)}, client.WithRetry(client.Retry{MaxAttempts: 10, BaseDelay: time.Minute, MaxDelay: time.Minute}))
	ctx, cancel = context.WithTimeout(bg, 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := down.Get(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read ended in backoff: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("deadline during backoff honoured after %s", d)
	}
}

// TestMonotonicReads: after reading a key at r1, the client does not
// accept an older state of it from r2 (behind on a paused link): it tries
// elsewhere and reports ErrBehind when nothing newer can be had, then
// takes what the regions have.
func TestMonotonicReads(t *testing.T) {
	c := startRegions(t, []string{"r1", "r2"}, "all-to-all", nil)
	r1, r2 := urlOf(c, "r1"), urlOf(c, "r2")
	b1, b2 := stateless(t, r1), stateless(t, r2)
	if _, err := b2.Put(bg, "k", "old"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "r1 has the old value", func() bool {
		v, err := b1.Get(bg, "k")
		return err == nil && string(v.Data) == `"old"`
	})
	if _, err := newClient(t, []string{r2}).PauseLink(bg, "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b1.Put(bg, "k", "new"); err != nil {
		t.Fatal(err)
	}
	app := newClient(t, []string{r1, r2}, client.WithRetry(client.Retry{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}))
	if v, err := app.Get(bg, "k"); err != nil || string(v.Data) != `"new"` {
		t.Fatalf("read at r1: %+v %v", v, err)
	}
	if err := c.Stop("r1"); err != nil {
		t.Fatal(err)
	}
	if v, err := b2.Get(bg, "k"); err != nil || string(v.Data) != `"old"` {
		t.Fatalf("r2 alone: %+v %v, want the old value", v, err)
	}
	if v, err := app.Get(bg, "k"); !errors.Is(err, client.ErrBehind) {
		t.Fatalf("read at r2 after reading the new value: %+v %v, want ErrBehind", v, err)
	}
	if v, err := app.Get(bg, "k"); err != nil || string(v.Data) != `"old"` {
		t.Fatalf("read after ErrBehind: %+v %v, want what r2 has", v, err)
	}
}

// TestAwkwardKeys: keys that look like paths reach the server unchanged.
func TestAwkwardKeys(t *testing.T) {
	c := startRegions(t, []string{"r1"}, "all-to-all", nil)
	app := newClient(t, []string{urlOf(c, "r1")})
	keys := []string{".", "..", "a/../b", "a//b", "./x", "a b", "a?b#c", "a%2Fb", "é/ü", "/lead", "trail/"}
	for i, k := range keys {
		if _, err := app.Put(bg, k, i); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	for i, k := range keys {
		v, err := app.Get(bg, k)
		if err != nil || string(v.Data) != strconv.Itoa(i) {
			t.Fatalf("get %q: %s %v, want %d", k, v.Data, err, i)
		}
	}
	var got []string
	for k, err := range app.Keys(bg, "") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, k)
	}
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(got, want) {
		t.Fatalf("keys %q, want %q", got, want)
	}
}

// TestConcurrentUse: one client shared by goroutines (run it with -race).
// Its session ends naming the region's last write (the join law itself is
// TestSessionJoin's), and a reader elsewhere given it sees every key.
func TestConcurrentUse(t *testing.T) {
	c := startRegions(t, []string{"r1", "r2"}, "all-to-all", allSiblings())
	app := newClient(t, []string{urlOf(c, "r1")}, client.WithResolver(union))
	const workers, writes = 8, 15
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			var err error
			for i := range writes {
				key := fmt.Sprintf("k%d", (w+i)%4)
				if _, err = app.Put(bg, key, []string{fmt.Sprintf("w%d-%d", w, i)}); err != nil {
					break
				}
				if _, err = app.Get(bg, key); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st, err := app.Status(bg)
	if err != nil {
		t.Fatal(err)
	}
	sess := conflict.VV{}
	for _, tok := range conflict.SplitTokens(app.Session()) {
		var vv conflict.VV
		if vv, err = conflict.PeekToken(conflict.TokenSession, "", tok); err != nil {
			break
		}
		sess = sess.Merge(vv)
	}
	if err != nil || sess[st.Actor] != st.Seq {
		t.Fatalf("session %v (%v), want %s at %d, the region's last write", sess, err, st.Actor, st.Seq)
	}
	reader := newClient(t, []string{urlOf(c, "r2")}, client.WithResolver(union))
	if err := reader.SetSession(app.Session()); err != nil {
		t.Fatal(err)
	}
	for k := range 4 {
		if _, err := reader.Get(bg, fmt.Sprintf("k%d", k), client.Wait(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
}
