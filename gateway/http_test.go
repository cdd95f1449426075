package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/rules"
)

func TestSingleRegionCRUD(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", nil)
	base := c.Node("solo").HTTPURL()

	a := do(t, "PUT", base+"/v1/kv/user/1", []byte(`{"name": "Ada"}`))
	if a.status != 200 {
		t.Fatalf("put: %d %s", a.status, a.body)
	}
	w := a.json(t)
	if w["key"] != "user/1" || w["context"] == "" || w["session"] == "" {
		t.Fatalf("put answer %v lacks key/context/session", w)
	}
	meta := do(t, "GET", base+"/v1/kv/user/1?meta=true", nil).json(t)
	if dot := meta["versions"].([]any)[0].(map[string]any)["dot"]; w["dot"] == "" || w["dot"] != dot {
		t.Fatalf("put answer dot %v, meta says %v", w["dot"], dot)
	}
	if a.header.Get(HeaderContext) != w["context"] || a.header.Get(HeaderSession) != w["session"] {
		t.Fatalf("headers do not repeat the tokens: %v", a.header)
	}
	g := do(t, "GET", base+"/v1/kv/user/1", nil)
	if g.status != 200 || strings.TrimSpace(string(g.body)) != `{"name":"Ada"}` {
		t.Fatalf("get: %d %s", g.status, g.body)
	}
	if g.header.Get(HeaderContext) == "" {
		t.Fatal("get has no context header")
	}
	// Overwrite under lww without context: one value.
	do(t, "PUT", base+"/v1/kv/user/1", []byte(`{"name":"Grace"}`))
	g = do(t, "GET", base+"/v1/kv/user/1?meta=true", nil)
	m := g.json(t)
	if vs := m["versions"].([]any); len(vs) != 1 || m["rule"] != "default" {
		t.Fatalf("meta after lww overwrite: %s", g.body)
	}
	// List.
	do(t, "PUT", base+"/v1/kv/user/2", []byte(`2`))
	do(t, "PUT", base+"/v1/kv/other", []byte(`3`))
	l := do(t, "GET", base+"/v1/kv?prefix=user/", nil).json(t)
	if keys, _ := json.Marshal(l["keys"]); string(keys) != `["user/1","user/2"]` {
		t.Fatalf("list: %s", keys)
	}
	l = do(t, "GET", base+"/v1/kv?prefix=user/&limit=1", nil).json(t)
	if keys, _ := json.Marshal(l["keys"]); string(keys) != `["user/1"]` || l["next"] != "user/1" {
		t.Fatalf("list limit 1: %v", l)
	}
	// Delete: 404 afterwards, meta shows the tombstone, list leaves it out.
	d := do(t, "DELETE", base+"/v1/kv/user/2", nil)
	if d.status != 200 || d.json(t)["context"] == "" {
		t.Fatalf("delete: %d %s", d.status, d.body)
	}
	if g := do(t, "GET", base+"/v1/kv/user/2", nil); g.status != 404 || g.json(t)["code"] != "not_found" {
		t.Fatalf("get deleted: %d %s", g.status, g.body)
	}
	m = do(t, "GET", base+"/v1/kv/user/2?meta=true", nil).json(t)
	if vs := m["versions"].([]any); len(vs) != 1 || vs[0].(map[string]any)["deleted"] != true {
		t.Fatalf("meta of deleted: %v", m)
	}
	l = do(t, "GET", base+"/v1/kv?prefix=user/", nil).json(t)
	if keys, _ := json.Marshal(l["keys"]); string(keys) != `["user/1"]` {
		t.Fatalf("list after delete: %s", keys)
	}
	if g := do(t, "GET", base+"/v1/kv/never", nil); g.status != 404 || g.header.Get(HeaderContext) != "" {
		t.Fatalf("missing key: %d %v", g.status, g.header)
	}
	if g := do(t, "GET", base+"/v1/kv/never?meta=true", nil); g.status != 404 {
		t.Fatalf("missing key meta: %d", g.status)
	}
}

// TestShoppingCartFigure5_13 replays figure 5-13 of Designing
// Data-Intensive Applications through the HTTP API of one region under the
// siblings strategy: two clients share a shopping cart; each writes with
// the context its own previous write returned (none the first time), so a
// write overwrites exactly what its client had seen and keeps the other
// client's values as siblings ([milk] and [eggs], then [eggs] and
// [milk, flour], ...). Each answer carries the siblings left and the
// context that covers them (conflict/scenarios_test.go has the full table).
func TestShoppingCartFigure5_13(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", []rules.Spec{{Name: "carts", Match: "true", Strategy: "siblings"}})
	url := c.Node("solo").HTTPURL() + "/v1/kv/cart"
	write := func(value, ctx string) (string, []string) {
		t.Helper()
		var a answer
		if ctx == "" {
			a = do(t, "PUT", url, []byte(value))
		} else {
			a = do(t, "PUT", url, []byte(value), HeaderContext, ctx)
		}
		if a.status != 200 {
			t.Fatalf("put %s: %d %s", value, a.status, a.body)
		}
		return a.json(t)["context"].(string), siblings(t, url)
	}
	c1, s := write(`["milk"]`, "")
	expectSet(t, 1, s, `["milk"]`)
	c2, s := write(`["eggs"]`, "")
	expectSet(t, 2, s, `["milk"]`, `["eggs"]`)
	c1, s = write(`["milk","flour"]`, c1)
	expectSet(t, 3, s, `["eggs"]`, `["milk","flour"]`)
	_, s = write(`["eggs","milk","ham"]`, c2)
	expectSet(t, 4, s, `["milk","flour"]`, `["eggs","milk","ham"]`)
	_, s = write(`["milk","flour","eggs","bacon"]`, c1)
	expectSet(t, 5, s, `["eggs","milk","ham"]`, `["milk","flour","eggs","bacon"]`)
}

func siblings(t *testing.T, url string) []string {
	t.Helper()
	a := do(t, "GET", url, nil)
	switch a.status {
	case 200:
		return []string{strings.TrimSpace(string(a.body))}
	case 300:
		var body struct{ Siblings []json.RawMessage }
		if err := json.Unmarshal(a.body, &body); err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, s := range body.Siblings {
			out = append(out, string(s))
		}
		return out
	}
	t.Fatalf("get: %d %s", a.status, a.body)
	return nil
}

func expectSet(t *testing.T, step int, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("step %d: siblings %v, want %v", step, got, want)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Fatalf("step %d: siblings %v, want %v", step, got, want)
		}
	}
}

func TestBadInput(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", nil)
	n := c.Node("solo")
	base := n.HTTPURL()
	ok := do(t, "PUT", base+"/v1/kv/k", []byte(`{"a":1}`))
	otherCtx := do(t, "PUT", base+"/v1/kv/other", []byte(`1`)).json(t)["context"].(string)
	before, _, err := n.Store().Digest()
	if err != nil {
		t.Fatal(err)
	}
	huge := bytes.Repeat([]byte("a"), int(n.cfg.HTTP.MaxValueBytes)+10)
	cases := []struct {
		name, method, path string
		body               []byte
		headers            []string
		status             int
		code               string
	}{
		{"malformed json", "PUT", "/v1/kv/k", []byte(`{"a":`), nil, 400, "bad_json"},
		{"empty body", "PUT", "/v1/kv/k", []byte(``), nil, 400, "bad_json"},
		{"two documents", "PUT", "/v1/kv/k", []byte(`{} {}`), nil, 400, "bad_json"},
		{"empty key", "PUT", "/v1/kv/", []byte(`1`), nil, 400, "bad_key"},
		{"oversized key", "PUT", "/v1/kv/" + strings.Repeat("k", 1025), []byte(`1`), nil, 400, "bad_key"},
		{"control character", "PUT", "/v1/kv/a%01b", []byte(`1`), nil, 400, "bad_key"},
		{"newline in key", "GET", "/v1/kv/a%0Ab", nil, nil, 400, "bad_key"},
		{"invalid utf8", "PUT", "/v1/kv/a%FFb", []byte(`1`), nil, 400, "bad_key"},
		{"oversized body", "PUT", "/v1/kv/k", append(append([]byte(`"`), huge...), '"'), nil, 413, "too_large"},
		{"corrupt context", "PUT", "/v1/kv/k", []byte(`1`), []string{HeaderContext, "!!!not-base64"}, 400, "bad_context"},
		{"garbage context", "PUT", "/v1/kv/k", []byte(`1`), []string{HeaderContext, "AAAA"}, 400, "bad_context"},
		{"context of another key", "PUT", "/v1/kv/k", []byte(`1`), []string{HeaderContext, otherCtx}, 400, "bad_context"},
		{"corrupt session", "GET", "/v1/kv/k", nil, []string{HeaderSession, "%%%"}, 400, "bad_session"},
		{"bad wait", "GET", "/v1/kv/k", nil, []string{HeaderSession, n.tokens.encodeSession(map[string]uint64{"x~1": 1}), HeaderWait, "soon"}, 400, "bad_wait"},
		{"unknown route", "GET", "/v2/nothing", nil, nil, 404, "not_found"},
		{"wrong method on kv", "POST", "/v1/kv/k", []byte(`1`), nil, 405, "method_not_allowed"},
		{"wrong method on list", "DELETE", "/v1/kv", nil, nil, 405, "method_not_allowed"},
		{"wrong method on status", "PUT", "/v1/status", nil, nil, 405, "method_not_allowed"},
		{"bad list limit", "GET", "/v1/kv?limit=-3", nil, nil, 400, "bad_limit"},
		{"bad conflicts limit", "GET", "/v1/conflicts?limit=x", nil, nil, 400, "bad_limit"},
		{"pause unknown link", "POST", "/v1/admin/links/nowhere/pause", nil, nil, 404, "no_link"},
		{"unknown admin action", "POST", "/v1/admin/links/x/explode", nil, nil, 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, tc.method, base+tc.path, tc.body, tc.headers...)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			m := a.json(t)
			if m["code"] != tc.code || m["error"] == "" {
				t.Fatalf("body %v, want code %q and a message", m, tc.code)
			}
		})
	}
	after, _, err := n.Store().Digest()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("bad requests changed stored data")
	}
	if g := do(t, "GET", base+"/v1/kv/k", nil); g.status != 200 || strings.TrimSpace(string(g.body)) != `{"a":1}` || ok.status != 200 {
		t.Fatalf("value changed: %d %s", g.status, g.body)
	}
	if h := do(t, "GET", base+"/healthz", nil); h.status != 200 {
		t.Fatalf("healthz after bad input: %d", h.status)
	}
}

func TestStatusMetricsHealth(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", nil)
	base := c.Node("solo").HTTPURL()
	do(t, "PUT", base+"/v1/kv/a", []byte(`1`))
	if h := do(t, "GET", base+"/healthz", nil); h.status != 200 {
		t.Fatalf("healthz %d", h.status)
	}
	s := do(t, "GET", base+"/v1/status", nil).json(t)
	if s["region"] != "solo" || s["seq"].(float64) != 1 || s["topology"] == "" {
		t.Fatalf("status %v", s)
	}
	m := do(t, "GET", base+"/metrics", nil)
	for _, want := range []string{`geogate_writes_total{op="put"} 1`, "geogate_applied_events_total", `geogate_http_requests_total{code="200",route="/v1/kv/{key...}"}`} {
		if !strings.Contains(string(m.body), want) {
			t.Fatalf("metrics lack %q", want)
		}
	}
}

func TestSessionStaleRead(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", nil)
	base := c.Node("solo").HTTPURL()
	w := do(t, "PUT", base+"/v1/kv/a", []byte(`1`)).json(t)
	// The region's own session is satisfied at once.
	if g := do(t, "GET", base+"/v1/kv/a", nil, HeaderSession, w["session"].(string)); g.status != 200 {
		t.Fatalf("own session read: %d %s", g.status, g.body)
	}
	// A session naming writes this region never saw: 503 stale, after the wait.
	tok := c.Node("solo").tokens.encodeSession(map[string]uint64{"elsewhere~00": 5})
	start := time.Now()
	g := do(t, "GET", base+"/v1/kv/a", nil, HeaderSession, tok, HeaderWait, "150")
	if g.status != http.StatusServiceUnavailable || g.json(t)["code"] != "stale" {
		t.Fatalf("stale read: %d %s", g.status, g.body)
	}
	if time.Since(start) < 150*time.Millisecond {
		t.Fatal("stale read did not wait for X-Geo-Wait")
	}
	if !strings.Contains(string(g.body), "elsewhere~00") {
		t.Fatalf("stale answer does not name what is missing: %s", g.body)
	}
}

// TestStoreClosedAnswers503 closes a region's store under its HTTP API, as
// a shutdown does to requests still in flight: reads and writes answer 503
// shutting_down, which a client retries at another region, not 500.
func TestStoreClosedAnswers503(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", nil)
	n := c.Node("solo")
	base := n.HTTPURL()
	if a := do(t, "PUT", base+"/v1/kv/k", []byte(`1`)); a.status != 200 {
		t.Fatalf("put: %d %s", a.status, a.body)
	}
	if err := n.Store().Close(); err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct{ method, path, body string }{
		{"GET", "/v1/kv/k", ""},
		{"GET", "/v1/kv/k?meta=true", ""},
		{"GET", "/v1/kv?prefix=", ""},
		{"GET", "/v1/conflicts", ""},
		{"PUT", "/v1/kv/k", "2"},
		{"DELETE", "/v1/kv/k", ""},
	} {
		var body []byte
		if req.body != "" {
			body = []byte(req.body)
		}
		a := do(t, req.method, base+req.path, body)
		if a.status != http.StatusServiceUnavailable || a.json(t)["code"] != "shutting_down" {
			t.Errorf("%s %s with the store closed: %d %s, want 503 shutting_down", req.method, req.path, a.status, a.body)
		}
	}
}
