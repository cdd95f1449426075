package gateway

import (
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

// consoleFiles are the web console's assets (gateway/ui): plain HTML, CSS
// and JavaScript, served as they are, with nothing fetched from elsewhere.
//
//go:embed ui
var consoleFiles embed.FS

// consoleCSP lets the console's page load only its own files and talk only
// to its own region.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// console serves the web console at /ui/ (GET and HEAD). The page holds no
// data: it reads everything from this region's API, sending the bearer
// token the user gives it, so whatever guards the API guards what the
// console shows and does.
type console struct{ files fs.FS }

func newConsole() *console {
	sub, err := fs.Sub(consoleFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree always has ui/
	}
	return &console{files: sub}
}

func (c *console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(c.files, name)
	if err != nil || strings.Contains(name, "..") {
		writeError(w, errorf(http.StatusNotFound, "not_found", "no console file %q: open /ui/", name))
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b) //nolint:errcheck // client gone
	}
}
