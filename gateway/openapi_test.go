package gateway

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/rules"
)

// loadOpenAPI parses and validates the embedded OpenAPI document.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPI)
	if err != nil {
		t.Fatalf("openapi.json does not load: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// documentedPath turns a ServeMux pattern into its OpenAPI path:
// {key...} is {key}.
func documentedPath(pattern string) string { return strings.ReplaceAll(pattern, "...}", "}") }

// TestOpenAPIMatchesRoutes: the OpenAPI document describes exactly the
// (method, path) pairs the route table registers, and the mux registers
// no route outside the table.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	registered := map[string]bool{}
	for _, rt := range apiRoutes {
		for _, m := range rt.methods {
			registered[m+" "+documentedPath(rt.pattern)] = true
		}
	}
	for r := range registered {
		if !documented[r] {
			t.Errorf("route %s is served but not in gateway/openapi.json: describe it there", r)
		}
	}
	for r := range documented {
		if !registered[r] {
			t.Errorf("gateway/openapi.json describes %s, which no route in apiRoutes (gateway/routes.go) serves", r)
		}
	}
	if len(registered) == 0 {
		t.Fatal("no routes")
	}

	// Every route must come from the table: no Handle or HandleFunc on a
	// mux elsewhere in the package, but routes' own catch-all "/".
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") || len(call.Args) != 2 {
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if p, _ := strconv.Unquote(lit.Value); p != "/" {
					t.Errorf("%s: route %s registered outside apiRoutes: add it to the table in gateway/routes.go and describe it in gateway/openapi.json", fset.Position(call.Pos()), lit.Value)
				}
			}
			return true
		})
	}
}

// TestRouteMethods: a running region serves each route's methods and
// answers 405 with Allow for the others, so the table the OpenAPI document
// is checked against is what the server does.
func TestRouteMethods(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", nil)
	base := c.Node("r1").HTTPURL()
	all := []string{"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"}
	for _, rt := range apiRoutes {
		// (A change feed beyond the region's log ends at once with an
		// error event, instead of streaming.)
		path := strings.NewReplacer("{key...}", "k", "{peer}", "r2", "{action}", "resume", "/v1/watch", "/v1/watch?after=999999", "{file...}", "index.html").Replace(rt.pattern)
		for _, m := range all {
			a := do(t, m, base+path, nil)
			served := slices.Contains(rt.methods, m)
			if served == (a.status == http.StatusMethodNotAllowed) {
				t.Errorf("%s %s: %d, want the route to serve it: %v", m, rt.pattern, a.status, served)
			}
			if !served && a.header.Get("Allow") != strings.Join(rt.methods, ", ") {
				t.Errorf("%s %s: Allow %q, want %q", m, rt.pattern, a.header.Get("Allow"), strings.Join(rt.methods, ", "))
			}
		}
	}
	if a := do(t, "GET", base+"/v1/nothing", nil); a.status != 404 || a.json(t)["code"] != "not_found" {
		t.Fatalf("unknown route: %d %s", a.status, a.body)
	}
}

// TestOpenAPIDescribesAnswers: real answers of a running region, one of
// each kind (successes, siblings, redirects, each error status), match the
// document's responses for their status, schemas and headers included.
func TestOpenAPIDescribesAnswers(t *testing.T) {
	specs := []rules.Spec{
		{Name: "redir", Match: `key startsWith "d-"`, Strategy: "home_region", Home: `"r2"`, HomeMode: "redirect"},
		{Name: "rej", Match: `key startsWith "j-"`, Strategy: "home_region", Home: `"r2"`, HomeMode: "reject"},
		{Name: "sib", Match: `key startsWith "s-"`, Strategy: "siblings"},
		lwwDefault(),
	}
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", specs, func(s *ClusterSpec) {
		s.Tune = func(c *config.Config) { c.HTTP.MaxValueBytes = 1024 }
	})
	base := c.Node("r1").HTTPURL()
	doc := loadOpenAPI(t)
	doc.Servers = openapi3.Servers{{URL: base}}
	for _, ct := range []string{"text/event-stream", "text/html", "text/javascript", "text/css"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[int]bool{}
	check := func(method, path string, body []byte, headers ...string) answer {
		t.Helper()
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := noRedirectClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		// (The router matches the decoded path: these keys have no '/'.)
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("%s %s: no route in the document: %v", method, path, err)
		}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
			Status:                 resp.StatusCode, Header: resp.Header,
			Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		}
		in.SetBodyBytes(b)
		if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
			t.Errorf("%s %s: answer %d %s does not match the document: %v", method, path, resp.StatusCode, b, err)
		}
		statuses[resp.StatusCode] = true
		return answer{status: resp.StatusCode, header: resp.Header, body: b}
	}

	w := check("PUT", "/v1/kv/k", []byte(`{"a":1}`))
	check("PUT", "/v1/kv/k", []byte(`[1,"x",null]`), HeaderContext, w.header.Get(HeaderContext))
	check("GET", "/v1/kv/k", nil)
	check("HEAD", "/v1/kv/k", nil)
	check("GET", "/v1/kv/k?meta=true", nil)
	check("PUT", "/v1/kv/s-1", []byte(`"one"`))
	check("PUT", "/v1/kv/s-1", []byte(`"two"`))
	if a := check("GET", "/v1/kv/s-1", nil); a.status != 300 {
		t.Fatalf("siblings: %d", a.status)
	}
	check("DELETE", "/v1/kv/k", nil)
	check("GET", "/v1/kv/k?meta=true", nil) // a tombstone: value null
	check("GET", "/v1/kv/k", nil)           // 404 with a context
	check("GET", "/v1/kv/nothing", nil)
	check("PUT", "/v1/kv/k", []byte(`{"a":`))
	check("PUT", "/v1/kv/k", bytes.Repeat([]byte(" "), 2000))
	check("PUT", "/v1/kv/d-1", []byte(`1`))
	check("PUT", "/v1/kv/j-1", []byte(`1`))
	check("GET", "/v1/kv?limit=1", nil)
	check("GET", "/v1/kv?prefix=s-", nil)
	check("GET", "/v1/kv?limit=0", nil)
	check("GET", "/v1/conflicts?limit=5", nil)
	check("GET", "/v1/watch?after=999999", nil) // ends with position_ahead
	check("GET", "/v1/watch?after=x", nil)
	check("GET", "/v1/watch", nil, "Last-Event-ID", "-1")
	check("GET", "/v1/status?peers=true", nil)
	check("GET", "/v1/admin/rules/playground", nil)
	check("POST", "/v1/admin/rules/playground", []byte(`{"rules":"rules:\n  - name: x\n    match: 'true'\n    strategy: lww\n","key":"k"}`))
	check("POST", "/v1/admin/rules/playground", []byte(`{"rules":"rules: [","key":"k"}`))
	check("POST", "/v1/admin/rules/playground", []byte(`[]`))
	check("GET", "/ui/", nil)
	check("GET", "/ui/console.js", nil)
	check("HEAD", "/ui/console.css", nil)
	check("GET", "/ui/nothing.html", nil)
	check("GET", "/v1/status", nil)
	check("POST", "/v1/admin/links/r2/pause", nil)
	// r1 cannot catch up with r2 now: a session read of r2's write is stale.
	s := do(t, "PUT", c.Node("r2").HTTPURL()+"/v1/kv/later", []byte(`1`))
	check("GET", "/v1/kv/later", nil, HeaderSession, s.header.Get(HeaderSession), HeaderWait, "0")
	check("POST", "/v1/admin/links/r2/resume", nil)
	check("POST", "/v1/admin/links/nobody/pause", nil)
	check("POST", "/v1/admin/links/r1/pause?at=r2", nil) // relayed to r2
	check("POST", "/v1/admin/links/r1/resume?at=r2", nil)
	check("POST", "/v1/admin/links/r1/pause?at=mars", nil)
	check("GET", "/healthz", nil)
	check("HEAD", "/healthz", nil)
	check("GET", "/metrics", nil)
	check("GET", "/v1/openapi.json", nil)
	check("HEAD", "/v1/openapi.json", nil)
	for _, want := range []int{200, 300, 307, 400, 404, 413, 421, 503} {
		if !statuses[want] {
			t.Errorf("no answer with status %d was checked", want)
		}
	}
	// Stopping r2 makes r1's writes of r2's keys fail over to 503
	// home_unreachable.
	if err := c.Stop("r2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "r2 unreachable", func() bool {
		return check("PUT", "/v1/kv/d-2", []byte(`1`)).status == http.StatusServiceUnavailable
	})
}

// TestOpenAPIServed: every region serves the document at /v1/openapi.json.
func TestOpenAPIServed(t *testing.T) {
	c := startCluster(t, []string{"r1"}, "all-to-all", nil)
	a := do(t, "GET", c.Node("r1").HTTPURL()+"/v1/openapi.json", nil)
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") || !bytes.Equal(a.body, openAPI) {
		t.Fatalf("GET /v1/openapi.json: %d %q, %d bytes", a.status, a.header.Get("Content-Type"), len(a.body))
	}
	if !bytes.Contains(openAPI, []byte(`"openapi": "3.0.3"`)) {
		t.Fatal("not an OpenAPI 3.0.3 document")
	}
}
