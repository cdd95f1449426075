package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/rules"
)

// The polls of this package's tests (package wait).
var (
	eventually = wait.For
	holds      = wait.Holds
)

func testLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("GEOGATE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// startCluster runs regions in one process for a test and closes them at
// the end.
func startCluster(t testing.TB, regions []string, kind string, rs []rules.Spec, tune ...func(*ClusterSpec)) *Cluster {
	t.Helper()
	spec := ClusterSpec{
		Regions: regions, Topology: config.Topology{Kind: kind}, DataDir: t.TempDir(), Rules: rs, Sync: true,
		Options: func(string) Options { return Options{Logger: testLogger()} },
	}
	if kind == "star" {
		spec.Topology.Hub = regions[0]
	}
	for _, f := range tune {
		f(&spec)
	}
	c, err := StartCluster(context.Background(), spec)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", a.body, err)
	}
	return m
}

// do sends one request; headers alternate name, value.
func do(t testing.TB, method, url string, body []byte, headers ...string) answer {
	t.Helper()
	a, err := try(method, url, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// try sends one request and returns the answer or the transport error; it
// is safe off the test goroutine.
func try(method, url string, body []byte, headers ...string) (answer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return answer{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

var noRedirectClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func mustRequest(t testing.TB, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}
