package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/rules"
)

// fuzzNode is one region shared by every input of FuzzHTTP (starting a
// region per input would leave no time for fuzzing).
var (
	fuzzOnce sync.Once
	fuzzNode *Node
	fuzzErr  error
)

// FuzzHTTP sends the API whatever a client might: any key, method, query,
// context, session and wait headers and body. Every answer must be a JSON
// object with an error code for a non-2xx status, never a 5xx other than
// the region's own refusals (none apply here), and the process must not
// crash. Seeds cover every route and header; `go test -run '^$' -fuzz
// FuzzHTTP -fuzztime 10m ./gateway` runs it longer.
func FuzzHTTP(f *testing.F) {
	for _, s := range []struct{ method, path, query, ctx, session, wait, body string }{
		{"PUT", "k", "", "", "", "", `{"a":1}`},
		{"GET", "k", "meta=true", "", "", "", ""},
		{"DELETE", "k", "", "", "", "", ""},
		{"PUT", "user/1", "", "Q0FBQUFBQUFBQUFBQUFBQUE", "", "100", `"x"`},
		{"GET", "k", "", "", "UwAAAAAB", "9223372036855", ""},
		{"GET", "", "prefix=k&limit=3", "", "", "", ""},
		{"PUT", "a%00b", "", "", "", "", "\"a\xff\""},
		{"POST", "k", "", "", "", "", "{}"},
	} {
		f.Add(s.method, s.path, s.query, s.ctx, s.session, s.wait, []byte(s.body))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, method, key, query, ctxTok, session, wait string, body []byte) {
		fuzzOnce.Do(func() {
			var c *Cluster
			c, fuzzErr = StartCluster(context.Background(), ClusterSpec{Regions: []string{"fuzz"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: dir,
				Rules:   []rules.Spec{{Name: "keep", Match: `key startsWith "s/"`, Strategy: "siblings"}, {Name: "default", Match: "true", Strategy: "lww"}},
				Options: func(string) Options { return Options{Logger: testLogger()} }})
			if fuzzErr == nil {
				fuzzNode = c.Node("fuzz")
			}
		})
		if fuzzErr != nil {
			t.Fatal(fuzzErr)
		}
		switch method {
		case "GET", "PUT", "DELETE", "HEAD", "POST", "PATCH":
		default:
			method = "GET"
		}
		target := "/v1/kv/" + url.PathEscape(key)
		if key == "" {
			target = "/v1/kv"
		}
		if strings.ContainsAny(query, "# \r\n") {
			query = url.QueryEscape(query)
		}
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequestWithContext(t.Context(), method, target, bytes.NewReader(body))
		if err != nil {
			t.Skip()
		}
		for name, v := range map[string]string{HeaderContext: ctxTok, HeaderSession: session, HeaderWait: wait} {
			if v != "" && !strings.ContainsAny(v, "\r\n\x00") {
				req.Header.Set(name, v)
			}
		}
		if req.Header.Get(HeaderWait) != "" {
			req.Header.Set(HeaderWait, "0") // never wait in a fuzz run; the parser is covered by its own test
			if !strings.ContainsFunc(wait, func(r rune) bool { return r < '0' || r > '9' }) && wait != "" {
				req.Header.Set(HeaderWait, "1")
			}
		}
		rec := httptest.NewRecorder()
		fuzzNode.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body.Bytes())
		}
		if rec.Code >= 400 && method != "HEAD" {
			var e struct{ Error, Code string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" || e.Code == "" {
				t.Fatalf("%s %s: %d with a body that is not a JSON error: %q", method, target, rec.Code, rec.Body.Bytes())
			}
		}
	})
}
