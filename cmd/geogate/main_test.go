package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/ports"
)

// TestMain lets a test run this binary's main: the test binary re-executes
// itself with GEOGATE_RUN_MAIN=1 and the command's arguments.
func TestMain(m *testing.M) {
	if os.Getenv("GEOGATE_RUN_MAIN") == "1" {
		os.Args = append(os.Args[:1], strings.Fields(os.Getenv("GEOGATE_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func geogate(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GEOGATE_RUN_MAIN=1", "GEOGATE_ARGS="+strings.Join(args, " "))
	return cmd
}

// freePorts returns n distinct free loopback ports (held together, then
// released for the caller to bind).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ps, release, err := ports.Hold(n)
	if err != nil {
		t.Fatal(err)
	}
	release()
	return ps
}

func writeConfig(t *testing.T, dir string, httpPort, natsPort int) string {
	t.Helper()
	path := filepath.Join(dir, "region.yaml")
	cfg := fmt.Sprintf(`region: solo
regions:
  solo: { http: "http://127.0.0.1:%d", nats: "nats://127.0.0.1:%d" }
data_dir: %s
log: { level: info }
`, httpPort, natsPort, filepath.Join(dir, "data"))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startServe runs `geogate serve --config path` and waits for its "region"
// line.
func startServe(t *testing.T, path string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	return runServe(t, geogate("serve", "--config", path))
}

// runServe starts cmd, a `geogate serve`, and waits for its "region" line.
func runServe(t *testing.T, cmd *exec.Cmd) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		if !ok || !strings.HasPrefix(l, "region solo http://") {
			t.Fatalf("serve printed %q; stderr: %s", l, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve not up in 30s; stderr: %s", stderr.String())
	}
	return cmd, &stderr
}

// run executes the command tree in process and returns stdout and the error.
func run(args ...string) (string, error) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestServeGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	ps := freePorts(t, 2)
	httpPort := ps[0]
	path := writeConfig(t, dir, httpPort, ps[1])
	url := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	cmd, stderr := startServe(t, path)
	if out, err := run("put", "greeting", `{"hello":"world"}`, "--url", url); err != nil || !strings.Contains(out, `"key":"greeting"`) {
		t.Fatalf("put: %v %s", err, out)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM; stderr: %s", err, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop within 20s of SIGTERM")
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Fatalf("no shutdown log: %s", stderr)
	}
	// The acknowledged write is there after a restart.
	startServe(t, path)
	if out, err := run("get", "greeting", "--url", url); err != nil || strings.TrimSpace(out) != `{"hello":"world"}` {
		t.Fatalf("get after restart: %v %q", err, out)
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte("region: solo\nregions:\n  solo: { http: \"http://127.0.0.1:1\", nats: \"nats://127.0.0.1:2\" }\nhttp:\n  lissten: 1\ntopology: { kind: ring }\n"), 0o644)
	cmd := geogate("serve", "--config", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		t.Fatal("serve accepted a bad config")
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "geogate: config: unknown key \"http.lissten\"") ||
		!strings.HasPrefix(lines[1], "geogate: config: topology.kind: ") {
		t.Fatalf("want one line for http.lissten and one for topology.kind, got %q", lines)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Fatal("a refused config touched the data directory")
	}
}

func TestClientVerbs(t *testing.T) {
	c, err := gateway.StartCluster(context.Background(), gateway.ClusterSpec{
		Regions: []string{"solo"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: t.TempDir(), Sync: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	url := c.Node("solo").HTTPURL()
	if _, err := run("put", "k", `not json`, "--url", url); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("bad JSON accepted: %v", err)
	}
	if out, err := run("put", "k", `[1,2]`, "--url", url); err != nil || !strings.Contains(out, `"context"`) {
		t.Fatalf("put: %v %s", err, out)
	}
	if out, err := run("get", "k", "--url", url, "--meta"); err != nil || !strings.Contains(out, `"versions"`) {
		t.Fatalf("get --meta: %v %s", err, out)
	}
	if out, err := run("del", "k", "--url", url); err != nil || !strings.Contains(out, `"key":"k"`) {
		t.Fatalf("del: %v %s", err, out)
	}
	if _, err := run("get", "k", "--url", url); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("get after delete: %v", err)
	}
	if out, err := run("status", "--url", url); err != nil || !strings.Contains(out, "region    solo") {
		t.Fatalf("status: %v %s", err, out)
	}
	if _, err := run("get", "k", "--url", "nonsense"); err == nil || !strings.Contains(err.Error(), "--url") {
		t.Fatalf("bad url: %v", err)
	}
	if _, err := run("get", "k", "--url", "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "is a region running") {
		t.Fatalf("unreachable: %v", err)
	}
	// Several URLs: the first is down, the second answers. Keys that look
	// like paths arrive unchanged.
	urls := "http://127.0.0.1:1," + url
	if out, err := run("put", "..", `{"dots":2}`, "--url", urls, "-v"); err != nil ||
		!strings.Contains(out, "connection refused") || !strings.Contains(out, ": 200 OK") || !strings.Contains(out, "X-Geo-Session: ") {
		t.Fatalf("put with failover, verbose: %v %s", err, out)
	}
	if out, err := run("get", "..", "--url", urls); err != nil || strings.TrimSpace(out) != `{"dots":2}` {
		t.Fatalf("get ..: %v %q", err, out)
	}
}

// TestServeReloadsRulesFromGEOGATE_CONFIG starts `geogate serve` with its
// file named by $GEOGATE_CONFIG instead of --config: editing the file's
// rules reloads them, as with --config.
func TestServeReloadsRulesFromGEOGATE_CONFIG(t *testing.T) {
	dir := t.TempDir()
	ps := freePorts(t, 2)
	httpPort := ps[0]
	path := writeConfig(t, dir, httpPort, ps[1])
	cmd := geogate("serve")
	cmd.Env = append(cmd.Env, config.EnvConfigFile+"="+path)
	runServe(t, cmd)
	url := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	rulesOf := func() client.RulesStatus {
		c, err := client.New([]string{url})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		st, err := c.Status(context.Background())
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		return st.Rules
	}
	if r := rulesOf(); r.Source != "default" {
		t.Fatalf("rules at start: %+v, want the default set", r)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, "rules:\n  - {name: carts, match: 'key startsWith \"cart/\"', strategy: siblings}\n  - {name: rest, match: 'true', strategy: lww}\n"...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the edited rules to be in effect", func() bool {
		r := rulesOf()
		return r.Count == 2 && r.Source == path
	})
}
