package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds a Chromium to drive: $GEOGATE_CHROMIUM, else one on
// PATH. Without one the browser tests skip, saying so, unless
// GEOGATE_REQUIRE_BROWSER is set (CI installs Chromium and sets it, so a
// lost install fails instead of passing silently).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GEOGATE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("GEOGATE_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium binary found (chromium, chromium-browser, google-chrome, headless-shell on PATH, or $GEOGATE_CHROMIUM) and GEOGATE_REQUIRE_BROWSER is set")
	}
	t.Skip("skipping the web console's browser test: no Chromium binary found (install it, e.g. apt-get install chromium, or set GEOGATE_CHROMIUM)")
	return ""
}

// browser starts a headless Chromium with a fresh profile, for one test.
// The flags keep it from reaching out to the network, which is closed
// here (it would hang on connection attempts).
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1600),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser now, with no timeout
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// runIn runs browser actions, bounded, failing the test on error.
func runIn(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 3000) : ""`)) //nolint:errcheck // for the message only
		t.Fatalf("%s: %v\npage text:\n%s", what, err, page)
	}
}

// textOf returns an element's text.
func textOf(t *testing.T, ctx context.Context, selector string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(selector)))
	if err != nil {
		t.Fatalf("text of %s: %v", selector, err)
	}
	return s
}

// until waits until the JavaScript expression is true in the page.
func until(expr string) chromedp.Action[chromedp.Void] {
	poll := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(12*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := poll(ctx, t); err != nil {
			return fmt.Errorf("waiting for %s: %w", expr, err)
		}
		return nil
	})
}

// clickLive clicks the element selector names as soon as it exists, in one
// step in the page: the console redraws its link graph and table every
// second, so a node found by one DevTools call may be gone by the next.
func clickLive(selector string) chromedp.Action[chromedp.Void] {
	return until(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.dispatchEvent(new MouseEvent('click', {bubbles: true})); return true; })()`, selector))
}

// sel is a CSS selector of an element with a data-testid.
func sel(testid string) string { return fmt.Sprintf(`[data-testid=%q]`, testid) }

func present(selector string) string {
	return fmt.Sprintf("document.querySelector(%q) !== null", selector)
}

// TestConsoleInBrowser drives the web console of a running 3-region
// deployment in a real headless Chromium: the graph shows the three regions
// and their six links; a write made over the API appears in the key
// browser (and the change feed); pausing links from the graph (at this
// region and, relayed, at another) shows them paused, and the regions'
// APIs agree; a conflict appears in the conflict feed; the rule playground
// lints a set and explains a key under it.
func TestConsoleInBrowser(t *testing.T) {
	ctx := browser(t)
	c := startCluster(t, []string{"r1", "r2", "r3"}, "all-to-all", nil)
	r1, r2 := c.Node("r1").HTTPURL(), c.Node("r2").HTTPURL()

	t.Run("graph", func(t *testing.T) {
		runIn(t, ctx, "open the console",
			chromedp.Navigate(r1+"/ui/"),
			until(`document.querySelectorAll('[data-testid^="node-"]').length === 3`),
			until(`document.querySelectorAll('[data-testid^="edge-"]').length === 6`),
			until(`[...document.querySelectorAll('[data-testid^="edge-"]')].every(e => e.dataset.state === 'up')`),
		)
		if region := textOf(t, ctx, sel("region-name")); region != "r1" {
			t.Fatalf("region shown %q, want r1", region)
		}
		for _, l := range []string{"r1-r2", "r1-r3", "r2-r1", "r2-r3", "r3-r1", "r3-r2"} {
			runIn(t, ctx, "link "+l, until(present(sel("edge-"+l))), until(present(sel("link-row-"+l))))
		}
	})

	t.Run("a write appears in the key browser", func(t *testing.T) {
		w := do(t, "PUT", r2+"/v1/kv/ui/hello", []byte(`{"greeting":"hi"}`))
		// Wait until r1 has it, so that the listing is not a race.
		if a := do(t, "GET", r1+"/v1/kv/ui/hello", nil, HeaderSession, w.header.Get(HeaderSession), HeaderWait, "10000"); a.status != 200 {
			t.Fatalf("r1 did not apply the write: %d", a.status)
		}
		runIn(t, ctx, "list and open the key",
			chromedp.SetValue(chromedp.CSS(sel("key-prefix")), "ui/"),
			chromedp.Click(chromedp.CSS(sel("key-list"))),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid="key-item"][data-key="ui/hello"]`)),
			chromedp.Click(chromedp.CSS(`[data-testid="key-item"][data-key="ui/hello"]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid="version"][data-origin="r2"]`)),
			// The change feed panel showed it as it was applied.
			until(present(`[data-testid="change"][data-key="ui/hello"]`)),
		)
		read, rule := textOf(t, ctx, sel("key-read")), textOf(t, ctx, sel("key-rule"))
		if !strings.Contains(read, `{"greeting":"hi"}`) || rule != "default" {
			t.Fatalf("key detail: read %q, rule %q", read, rule)
		}
	})

	t.Run("pausing links shows them paused", func(t *testing.T) {
		runIn(t, ctx, "pause r2 -> r1 from the graph",
			clickLive(`[data-testid="edge-r2-r1"] text`),
			chromedp.WaitVisible(chromedp.CSS(`#link-detail [data-testid="pause-r2-r1"]`)),
			clickLive(`#link-detail [data-testid="pause-r2-r1"]`),
			until(`document.querySelector('[data-testid="edge-r2-r1"]').dataset.state === 'paused'`),
			until(`document.querySelector('[data-testid="link-detail-state"]').textContent === 'paused'`),
		)
		if st := c.Node("r1").link("r2").Status().State; st != "paused" {
			t.Fatalf("r1's link from r2 is %s after the console paused it", st)
		}
		// A link into another region: r1 relays the action to r3.
		runIn(t, ctx, "pause r1 -> r3 from the table",
			clickLive(`#links-table [data-testid="pause-r1-r3"]`),
			until(`document.querySelector('[data-testid="edge-r1-r3"]').dataset.state === 'paused'`),
		)
		if st := c.Node("r3").link("r1").Status().State; st != "paused" {
			t.Fatalf("r3's link from r1 is %s after the console paused it", st)
		}
		runIn(t, ctx, "resume r1 -> r3",
			clickLive(`#links-table [data-testid="resume-r1-r3"]`),
			until(`document.querySelector('[data-testid="edge-r1-r3"]').dataset.state === 'up'`),
		)
	})

	t.Run("a conflict appears in the feed", func(t *testing.T) {
		// r1 does not hear from r2 (paused above), nor r2 from r1 (paused
		// here): both write the key, neither write sees the other.
		c.Node("r2").PauseLink("r1")
		do(t, "PUT", r1+"/v1/kv/ui/conflict", []byte(`"from r1"`))
		do(t, "PUT", r2+"/v1/kv/ui/conflict", []byte(`"from r2"`))
		c.Node("r2").ResumeLink("r1")
		runIn(t, ctx, "resume r2 -> r1 and see the conflict",
			clickLive(`#links-table [data-testid="resume-r2-r1"]`),
			until(`document.querySelector('[data-testid="edge-r2-r1"]').dataset.state === 'up'`),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid="conflict"][data-key="ui/conflict"]`)),
		)
		text := textOf(t, ctx, `[data-testid="conflict"][data-key="ui/conflict"]`)
		if !strings.Contains(text, "default") || !strings.Contains(text, "discarded 1") {
			t.Fatalf("conflict shown as %q", text)
		}
	})

	t.Run("rule playground", func(t *testing.T) {
		bad := "rules:\n  - name: broken\n    match: 'key startsWith 1'\n    strategy: lww\n"
		good := "rules:\n  - name: ui\n    match: 'key startsWith \"ui/\"'\n    strategy: siblings\n  - name: default\n    match: 'true'\n    strategy: lww\n"
		runIn(t, ctx, "lint a broken set",
			chromedp.SetValue(chromedp.CSS(sel("rules-text")), bad),
			chromedp.Click(chromedp.CSS(sel("pg-run"))),
			chromedp.WaitVisible(chromedp.CSS(sel("pg-findings"))),
		)
		verdict := textOf(t, ctx, sel("pg-verdict"))
		if !strings.Contains(verdict, "would refuse") {
			t.Fatalf("verdict on a broken set: %q", verdict)
		}
		runIn(t, ctx, "explain a key under a sound set",
			chromedp.SetValue(chromedp.CSS(sel("rules-text")), good),
			chromedp.SetValue(chromedp.CSS(sel("pg-key")), "ui/conflict"),
			chromedp.Click(chromedp.CSS(sel("pg-run"))),
			until(`document.querySelectorAll('[data-testid="pg-rule"]').length === 2`),
		)
		governs := textOf(t, ctx, sel("pg-governs"))
		if !strings.Contains(governs, "rule ui governs") || !strings.Contains(governs, "300") {
			t.Fatalf("under the pasted set: %q, want rule ui showing 300 siblings", governs)
		}
	})
}

// TestConsoleSendsToken: the console is served through the API's route
// table, and the token a user gives it goes with every API request as
// Authorization: Bearer (here seen by a proxy in front of the region, as a
// guard in front of the API would see it), kept for the tab across a
// reload.
func TestConsoleSendsToken(t *testing.T) {
	ctx := browser(t)
	c := startCluster(t, []string{"r1"}, "all-to-all", nil)
	target, err := url.Parse(c.Node("r1").HTTPURL())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]string{} // API path -> last Authorization header
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	defer func() {
		front.CloseClientConnections() // the page's change feed never ends by itself
		front.Close()
	}()
	authOf := func(path string) string {
		mu.Lock()
		defer mu.Unlock()
		return seen[path]
	}
	runIn(t, ctx, "open the console and give a token",
		chromedp.Navigate(front.URL+"/ui/"),
		until(present(sel("node-r1"))),
		chromedp.SetValue(chromedp.CSS(sel("token-input")), "s3cret"),
		chromedp.Click(chromedp.CSS(sel("token-save"))),
	)
	eventually(t, 10*time.Second, "API requests with the token", func() bool {
		return authOf("/v1/status") == "Bearer s3cret" && authOf("/v1/conflicts") == "Bearer s3cret"
	})
	runIn(t, ctx, "reload",
		chromedp.Reload(),
		until(present(sel("node-r1"))),
		until(`sessionStorage.getItem('geogate.token') === 's3cret'`),
	)
	state := textOf(t, ctx, sel("token-state"))
	if !strings.Contains(state, "token") {
		t.Fatalf("token state after reload: %q", state)
	}
	mu.Lock()
	delete(seen, "/v1/watch")
	mu.Unlock()
	runIn(t, ctx, "the change feed carries it too", chromedp.Click(chromedp.CSS(`#change-form button`)))
	eventually(t, 10*time.Second, "the change feed's request with the token", func() bool { return authOf("/v1/watch") == "Bearer s3cret" })
}
