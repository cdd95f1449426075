package gateway

import (
	_ "embed"
	"net/http"
	"slices"
)

// apiRoute is one path of the HTTP API and the methods it takes.
type apiRoute struct {
	// pattern is a net/http ServeMux path pattern, without a method.
	pattern string
	// methods are the methods served; any other is answered 405 with Allow.
	methods []string
	handler func(n *Node) http.Handler
}

// apiRoutes is the HTTP API: every path a region serves, with its methods.
// routes registers exactly these (and a JSON 404 for the rest), and the
// OpenAPI document served at /v1/openapi.json (openapi.json) must describe
// exactly these: TestOpenAPIMatchesRoutes fails on a route missing from
// either, and on a route registered on the mux outside this table. A new
// route goes here and into openapi.json.
var apiRoutes = []apiRoute{
	{"/v1/kv/{key...}", []string{"GET", "HEAD", "PUT", "DELETE"}, handlerOf((*Node).handleKV)},
	{"/v1/kv", []string{"GET"}, handlerOf((*Node).handleList)},
	{"/v1/status", []string{"GET"}, func(n *Node) http.Handler { return http.HandlerFunc(newDeploymentView(n).handleStatus) }}, // deployment.go
	{"/v1/conflicts", []string{"GET"}, handlerOf((*Node).handleConflicts)},
	{"/v1/watch", []string{"GET"}, func(n *Node) http.Handler { return newWatchFeed(n) }}, // watch.go
	{"/v1/admin/links/{peer}/{action}", []string{"POST"}, func(n *Node) http.Handler { return http.HandlerFunc(newDeploymentView(n).handleLinkAdmin) }},
	{"/v1/admin/links/{peer}/reseed", []string{"POST"}, handlerOf((*Node).handleReseed)},
	{"/v1/admin/snapshot", []string{"GET"}, handlerOf((*Node).handleSnapshot)},
	{"/v1/admin/rules/explain", []string{"GET"}, handlerOf((*Node).handleExplain)},
	{"/v1/admin/rules/playground", []string{"GET", "POST"}, handlerOf((*Node).handlePlayground)}, // playground.go
	{"/ui/{file...}", []string{"GET", "HEAD"}, func(*Node) http.Handler { return newConsole() }}, // console.go, gateway/ui
	{"/v1/openapi.json", []string{"GET", "HEAD"}, func(*Node) http.Handler { return http.HandlerFunc(serveOpenAPI) }},
	{"/healthz", []string{"GET", "HEAD"}, handlerOf((*Node).handleHealth)},
	{"/metrics", []string{"GET"}, func(n *Node) http.Handler { return n.metrics.handler() }},
}

func handlerOf(f func(*Node, http.ResponseWriter, *http.Request)) func(*Node) http.Handler {
	return func(n *Node) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f(n, w, r) })
	}
}

// handlerFor returns the route's handler for node n, refusing methods the
// route does not list.
func (rt apiRoute) handlerFor(n *Node) http.Handler {
	h := rt.handler(n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(rt.methods, r.Method) {
			methodNotAllowed(w, r, rt.methods...)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// openAPI is the OpenAPI 3 description of the HTTP API.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI) //nolint:errcheck // client gone
}
