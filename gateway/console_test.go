package gateway

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/geogate/geogate/rules"
)

// TestConsoleServed: every region serves the console's embedded files at
// /ui/ with a content security policy that keeps the page on its own
// region, and the files load nothing from elsewhere.
func TestConsoleServed(t *testing.T) {
	c := startCluster(t, []string{"r1"}, "all-to-all", nil)
	base := c.Node("r1").HTTPURL()
	for path, ct := range map[string]string{"/ui/": "text/html", "/ui/index.html": "text/html", "/ui/console.js": "text/javascript", "/ui/console.css": "text/css"} {
		a := do(t, "GET", base+path, nil)
		if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), ct) || len(a.body) == 0 {
			t.Fatalf("GET %s: %d %q %d bytes", path, a.status, a.header.Get("Content-Type"), len(a.body))
		}
		if csp := a.header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "script-src 'self'") {
			t.Fatalf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	resp, err := noRedirectClient.Get(base + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode/100 != 3 || loc != "/ui/" {
		t.Fatalf("GET /ui: %d to %q, want a redirect to /ui/", resp.StatusCode, loc)
	}
	if a := do(t, "GET", base+"/ui/nothing.js", nil); a.status != 404 || a.json(t)["code"] != "not_found" {
		t.Fatalf("GET /ui/nothing.js: %d %s", a.status, a.body)
	}
	// Nothing from outside: no absolute URL but the SVG namespace.
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err = fs.WalkDir(consoleFiles, "ui", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(consoleFiles, path)
		if err != nil {
			return err
		}
		for _, m := range external.FindAllString(string(b), -1) {
			if m != "http://www.w3.org" {
				t.Errorf("%s refers to %s: the console must load nothing from elsewhere", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStatusPeers: GET /v1/status names every region's URL and, with
// ?peers=true, carries the other regions' status, or why one could not be
// read.
func TestStatusPeers(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2", "r3"}, "all-to-all", nil)
	base := c.Node("r1").HTTPURL()
	st := do(t, "GET", base+"/v1/status", nil).json(t)
	urls := st["urls"].(map[string]any)
	for _, r := range []string{"r1", "r2", "r3"} {
		if urls[r] != c.Node(r).HTTPURL() {
			t.Fatalf("urls[%s] = %v, want %s", r, urls[r], c.Node(r).HTTPURL())
		}
	}
	if _, ok := st["peers"]; ok {
		t.Fatal("peers without ?peers=true")
	}
	peers := do(t, "GET", base+"/v1/status?peers=true", nil).json(t)["peers"].([]any)
	if len(peers) != 2 {
		t.Fatalf("peers %v", peers)
	}
	for i, want := range []string{"r2", "r3"} {
		p := peers[i].(map[string]any)
		status, _ := p["status"].(map[string]any)
		if p["region"] != want || status == nil || status["region"] != want || len(status["links"].([]any)) != 2 {
			t.Fatalf("peer %d: %v", i, p)
		}
	}
	if err := c.Stop("r3"); err != nil {
		t.Fatal(err)
	}
	peers = do(t, "GET", base+"/v1/status?peers=true", nil).json(t)["peers"].([]any)
	if p := peers[1].(map[string]any); p["region"] != "r3" || p["status"] != nil || !strings.Contains(p["error"].(string), "refused") {
		t.Fatalf("a stopped peer: %v", p)
	}

	// Requests to peers carry the client's Authorization.
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Authorization") }))
	defer srv.Close()
	from := mustRequest(t, "GET", base+"/v1/status?peers=true", "")
	from.Header.Set("Authorization", "Bearer tok")
	if _, _, err := newDeploymentView(c.Node("r1")).forward(context.Background(), from, "GET", srv.URL); err != nil || got != "Bearer tok" {
		t.Fatalf("forwarded Authorization %q (%v)", got, err)
	}
}

// TestLinkAdminAt: ?at=REGION acts on that region's link, relayed by the
// region asked.
func TestLinkAdminAt(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", nil)
	base := c.Node("r1").HTTPURL()
	a := do(t, "POST", base+"/v1/admin/links/r1/pause?at=r2", nil)
	if a.status != 200 || a.json(t)["state"] != "paused" || a.json(t)["to"] != "r2" {
		t.Fatalf("pause at r2: %d %s", a.status, a.body)
	}
	if st := c.Node("r2").link("r1").Status().State; st != "paused" {
		t.Fatalf("r2's link from r1: %s", st)
	}
	if st := c.Node("r1").link("r2").Status().State; st == "paused" {
		t.Fatalf("r1's own link from r2 changed: %s", st)
	}
	if a := do(t, "POST", base+"/v1/admin/links/r1/resume?at=r2", nil); a.status != 200 || a.json(t)["state"] == "paused" {
		t.Fatalf("resume at r2: %d %s", a.status, a.body)
	}
	if a := do(t, "POST", base+"/v1/admin/links/r9/pause?at=r2", nil); a.status != 404 || a.json(t)["code"] != "no_link" {
		t.Fatalf("relayed no_link: %d %s", a.status, a.body)
	}
	if a := do(t, "POST", base+"/v1/admin/links/r1/pause?at=mars", nil); a.status != 404 || a.json(t)["code"] != "no_region" {
		t.Fatalf("at=mars: %d %s", a.status, a.body)
	}
	if a := do(t, "POST", base+"/v1/admin/links/r2/pause?at=r1", nil); a.status != 200 || c.Node("r1").link("r2").Status().State != "paused" {
		t.Fatalf("at=r1 (itself): %d %s", a.status, a.body)
	}
	if err := c.Stop("r2"); err != nil {
		t.Fatal(err)
	}
	if a := do(t, "POST", base+"/v1/admin/links/r1/pause?at=r2", nil); a.status != 502 || a.json(t)["code"] != "peer_unreachable" {
		t.Fatalf("at a stopped region: %d %s", a.status, a.body)
	}
}

// TestPlayground: the playground lints a posted rule set as `geogate rules
// lint` does and explains a key's versions under it, next to the set in
// effect, changing nothing; GET gives the set in effect as a rule file
// that lints clean.
func TestPlayground(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", []rules.Spec{
		{Name: "carts", Match: `key startsWith "cart/"`, Strategy: "siblings"}, lwwDefault(),
	})
	base := c.Node("r1").HTTPURL()
	do(t, "PUT", base+"/v1/kv/cart/1", []byte(`{"items":["a"]}`))
	do(t, "PUT", base+"/v1/kv/cart/1", []byte(`{"items":["b"]}`)) // siblings: no context
	current := do(t, "GET", base+"/v1/admin/rules/playground", nil).json(t)
	inEffect := current["rules"].(string)
	if !strings.Contains(inEffect, "carts") || current["regions"].([]any)[1] != "r2" {
		t.Fatalf("rules in effect: %v", current)
	}
	post := func(body string) map[string]any {
		t.Helper()
		a := do(t, "POST", base+"/v1/admin/rules/playground", []byte(body))
		if a.status != 200 {
			t.Fatalf("POST %s: %d %s", body, a.status, a.body)
		}
		return a.json(t)
	}
	// The set in effect, posted back: clean, and the same hash.
	ans := post(`{"rules":` + quote(inEffect) + `,"key":"cart/1"}`)
	if ans["ok"] != true || len(ans["findings"].([]any)) != 0 {
		t.Fatalf("the set in effect: %v", ans)
	}
	if ans["candidate"].(map[string]any)["rules"].(map[string]any)["hash"] != ans["current"].(map[string]any)["rules"].(map[string]any)["hash"] {
		t.Fatalf("same rules, different hashes: %v", ans)
	}
	// A set that merges carts instead: each rule's verdict on cart/1.
	merge := "rules:\n  - name: carts\n    match: 'key startsWith \"cart/\"'\n    strategy: custom\n    merge: '{\"items\": union(map(siblings, #.items))}'\n  - name: default\n    match: 'true'\n    strategy: lww\n"
	ans = post(`{"rules":` + quote(merge) + `,"key":"cart/1"}`)
	cand := ans["candidate"].(map[string]any)
	if ans["ok"] != true || cand["rule"] != "carts" || cand["strategy"] != "custom" || cand["merged"] == nil {
		t.Fatalf("candidate: %v", ans)
	}
	each := ans["each"].([]any)
	lww := each[1].(map[string]any)
	if len(each) != 2 || each[0].(map[string]any)["governs"] != true || lww["match"] != "match" || lww["governs"] != false ||
		lww["read"].(map[string]any)["status"] != 200.0 || lww["read"].(map[string]any)["kept"] == nil {
		t.Fatalf("each: %v", each)
	}
	if cur := ans["current"].(map[string]any); cur["rule"] != "carts" || cur["read"].(map[string]any)["status"] != 300.0 {
		t.Fatalf("current: %v", cur)
	}
	// Lint errors, located; nothing explained under a broken set.
	ans = post(`{"rules":"rules:\n  - name: x\n    match: 'key startsWith 1'\n    strategy: lww\n","key":"cart/1"}`)
	var f map[string]any
	for _, x := range ans["findings"].([]any) {
		if x.(map[string]any)["severity"] == "error" {
			f = x.(map[string]any)
		}
	}
	if ans["ok"] != false || f == nil || f["line"] != 3.0 || f["rule"] != "x" || ans["candidate"] != nil || ans["current"] == nil {
		t.Fatalf("a broken set: %v", ans)
	}
	for body, code := range map[string]string{`{"rules": 1}`: "bad_json", `{"rules":"","key":""}`: "", `{"rules":"x","key":"a\u0000"}`: "bad_key"} {
		a := do(t, "POST", base+"/v1/admin/rules/playground", []byte(body))
		if code == "" {
			if a.status != 200 || a.json(t)["ok"] != false {
				t.Fatalf("%s: %d %s", body, a.status, a.body)
			}
			continue
		}
		if a.status != 400 || a.json(t)["code"] != code {
			t.Fatalf("%s: %d %s, want 400 %s", body, a.status, a.body, code)
		}
	}
	// Nothing changed: same rules, cart/1 still has its siblings.
	if a := do(t, "GET", base+"/v1/kv/cart/1", nil); a.status != 300 {
		t.Fatalf("cart/1 after the playground: %d", a.status)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
