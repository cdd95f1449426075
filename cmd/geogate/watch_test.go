package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
)

// TestWatchVerb: `geogate watch PREFIX` prints one JSON line per change
// under PREFIX and exits 0 on SIGINT; --after with a pruned position exits
// 1 saying what to do.
func TestWatchVerb(t *testing.T) {
	c, err := gateway.StartCluster(context.Background(), gateway.ClusterSpec{
		Regions: []string{"solo"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: t.TempDir(),
		Tune:    func(c *config.Config) { c.Watch.Retention = 2 },
		Options: func(string) gateway.Options { return gateway.Options{Logger: slog.New(slog.DiscardHandler)} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	url := c.Node("solo").HTTPURL()

	cmd := geogate("watch", "w/", "--url", url)
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
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Write until the watch, which starts from the newest change, shows
	// one (it may connect after the first writes).
	var line string
	deadline := time.Now().Add(30 * time.Second)
	for line == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no line from geogate watch; stderr: %s", stderr.String())
		}
		if o, err := run("put", "w/1", `{"n":1}`, "--url", url); err != nil {
			t.Fatalf("put: %v %s", err, o)
		}
		select {
		case line = <-lines:
		case <-time.After(200 * time.Millisecond):
		}
	}
	var ch struct {
		Position uint64 `json:"position"`
		Feed     string `json:"feed"`
		Key      string `json:"key"`
		Origin   string `json:"origin"`
		Versions []struct {
			Value json.RawMessage `json:"value"`
		} `json:"versions"`
	}
	if err := json.Unmarshal([]byte(line), &ch); err != nil || ch.Key != "w/1" || ch.Origin != "solo" || ch.Position == 0 ||
		ch.Feed != c.Node("solo").Store().Actor() || len(ch.Versions) != 1 || string(ch.Versions[0].Value) != `{"n":1}` {
		t.Fatalf("line %q (%v)", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch exited with %v after SIGINT; stderr: %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop on SIGINT")
	}

	for range 5 {
		run("put", "x", `1`, "--url", url)
	}
	if o, err := run("watch", "--after", "1", "--url", url); err == nil || !strings.Contains(err.Error(), "position") || !strings.Contains(err.Error(), "re-read") {
		t.Fatalf("watch --after a pruned position: %v %s", err, o)
	}
	if _, err := run("watch", "--feed", "x", "--url", url); err == nil || !strings.Contains(err.Error(), "--after") {
		t.Fatalf("--feed without --after: %v", err)
	}
}
