package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/buildinfo"
)

// decode parses a verb's --output json answer into v.
func decode(t *testing.T, verb, out string, v any) {
	t.Helper()
	if strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("%s -o json wrote more than one line: %q", verb, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s -o json: %v in %q", verb, err, out)
	}
}

// mustRun runs a command in process and fails the test if it fails.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(args...)
	if err != nil {
		t.Fatalf("geogate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestReadVerbs runs every read verb against two real regions in both
// output formats, and the link and conflict verbs through a real conflict:
// both regions' links paused, one key written in each, links resumed.
func TestReadVerbs(t *testing.T) {
	c, err := gateway.StartCluster(context.Background(), gateway.ClusterSpec{
		Regions: []string{"r1", "r2"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: t.TempDir(),
		Options: func(string) gateway.Options { return gateway.Options{Logger: slog.New(slog.DiscardHandler)} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u1, u2 := c.Node("r1").HTTPURL(), c.Node("r2").HTTPURL()

	// link pause|resume, in both formats.
	if out := mustRun(t, "link", "pause", "r2", "--url", u1); !strings.Contains(out, "r2 -> r1") || !strings.Contains(out, "paused") {
		t.Fatalf("link pause, table: %q", out)
	}
	var l client.LinkStatus
	decode(t, "link pause", mustRun(t, "link", "pause", "r1", "--url", u2, "-o", "json"), &l)
	if l.From != "r1" || l.To != "r2" || l.State != client.LinkPaused {
		t.Fatalf("link pause, json: %+v", l)
	}
	if _, err := run("link", "pause", "mars", "--url", u1); err == nil || !strings.Contains(err.Error(), "no link") {
		t.Fatalf("pause of a link that does not exist: %v", err)
	}

	// A conflict: one key written at each region while neither hears the other.
	mustRun(t, "put", "k", `{"at":"r1"}`, "--url", u1)
	mustRun(t, "put", "k", `{"at":"r2"}`, "--url", u2)
	for _, a := range [][]string{{"r2", u1}, {"r1", u2}} {
		decode(t, "link resume", mustRun(t, "link", "resume", a[0], "--url", a[1], "-o", "json"), &l)
		if l.State == client.LinkPaused {
			t.Fatalf("link resume: %+v", l)
		}
	}
	var conflicts struct{ Conflicts []client.ConflictEntry }
	// Usually well under a second; once, on a loaded CI machine, over 10s.
	eventually(t, 30*time.Second, "a conflict-log entry for k at r1", func() bool {
		decode(t, "conflicts", mustRun(t, "conflicts", "k", "--url", u1, "-o", "json"), &conflicts)
		return len(conflicts.Conflicts) > 0
	})
	if e := conflicts.Conflicts[0]; e.Key != "k" || e.Rule != "default" || len(e.Discarded) != 1 || e.Kept == nil {
		t.Fatalf("conflict entry %+v", e)
	}
	out := mustRun(t, "conflicts", "--url", u1)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) < 2 || !strings.HasPrefix(lines[0], "SEQ") || !strings.Contains(lines[1], " k ") {
		t.Fatalf("conflicts, table: %q", out)
	}
	decode(t, "conflicts", mustRun(t, "conflicts", "other", "--url", u1, "-o", "json"), &conflicts)
	if len(conflicts.Conflicts) != 0 {
		t.Fatalf("conflicts of a key without any: %+v", conflicts)
	}

	// keys, in both formats, with a prefix and a limit.
	for _, k := range []string{"a/1", "a/2", "b/1"} {
		mustRun(t, "put", k, `1`, "--url", u1)
	}
	if out := mustRun(t, "keys", "a/", "--url", u1); out != "a/1\na/2\n" {
		t.Fatalf("keys a/, table: %q", out)
	}
	var keys struct{ Keys []string }
	decode(t, "keys", mustRun(t, "keys", "--url", u1, "-o", "json", "--limit", "2"), &keys)
	if strings.Join(keys.Keys, " ") != "a/1 a/2" {
		t.Fatalf("keys --limit 2: %v", keys.Keys)
	}
	decode(t, "keys", mustRun(t, "keys", "zzz", "--url", u1, "-o", "json"), &keys)
	if keys.Keys == nil || len(keys.Keys) != 0 {
		t.Fatalf("keys of an empty prefix: %#v, want an empty list", keys.Keys)
	}

	// get, in both formats; --wait as a duration or as milliseconds.
	if out := mustRun(t, "get", "a/1", "--url", u1, "--wait", "2s"); out != "1\n" {
		t.Fatalf("get: %q", out)
	}
	if out := mustRun(t, "get", "a/1", "--url", u1, "-o", "table", "--wait", "1500"); !strings.HasPrefix(out, "KEY") || !strings.Contains(out, "a/1  default  1") {
		t.Fatalf("get -o table: %q", out)
	}
	if out := mustRun(t, "get", "a/1", "--url", u1, "--meta", "-o", "table"); !strings.HasPrefix(out, "DOT") || !strings.Contains(out, "r1") {
		t.Fatalf("get --meta -o table: %q", out)
	}
	if _, err := run("get", "a/1", "--url", u1, "--wait", "soon"); err == nil || !strings.Contains(err.Error(), "2s") {
		t.Fatalf("--wait soon: %v", err)
	}

	// status: table by default, json on request (--json still works).
	if out := mustRun(t, "status", "--url", u1); !strings.Contains(out, "region    r1") || !strings.Contains(out, "r2 -> r1") {
		t.Fatalf("status, table: %q", out)
	}
	var st client.Status
	decode(t, "status", mustRun(t, "status", "--url", u1, "-o", "json"), &st)
	if st.Region != "r1" || len(st.Links) != 1 {
		t.Fatalf("status -o json: %+v", st)
	}
	decode(t, "status", mustRun(t, "status", "--url", u1, "--json"), &st)

	// An unknown format is refused before any request.
	for _, verb := range [][]string{{"get", "k"}, {"status"}, {"keys"}, {"conflicts"}, {"version"}, {"link", "pause", "r2"}} {
		if _, err := run(append(verb, "--url", "http://127.0.0.1:1", "-o", "yaml")...); err == nil || !strings.Contains(err.Error(), "want json or table") {
			if verb[0] != "version" || err == nil || !strings.Contains(err.Error(), "unknown flag: --url") {
				t.Errorf("%s -o yaml: %v", verb[0], err)
			}
		}
	}
}

// TestVersion checks geogate version in both formats against the build
// information of the running binary.
func TestVersion(t *testing.T) {
	bi := buildinfo.Get()
	if out := mustRun(t, "version"); out != "geogate "+bi.String()+"\n" {
		t.Fatalf("version: %q", out)
	}
	var got buildinfo.Info
	decode(t, "version", mustRun(t, "version", "-o", "json"), &got)
	if got != bi {
		t.Fatalf("version -o json: %+v, want %+v", got, bi)
	}
	if _, err := run("version", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "want json or table") {
		t.Fatalf("version -o yaml: %v", err)
	}
}

// TestReport checks each line of a refused config's error is printed on
// its own line, and the exit status.
func TestReport(t *testing.T) {
	var b strings.Builder
	_, err := config.Load("", []string{"GEOGATE_REGOIN=x", "GEOGATE_HTP__LISTEN=y"}, nil)
	if err == nil {
		t.Fatal("config accepted")
	}
	if code := report(&b, err); code != 1 {
		t.Fatalf("exit status %d", code)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("want a line per problem, got %q", b.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "geogate: config: ") {
			t.Errorf("line %q", l)
		}
	}
	b.Reset()
	if code := report(&b, &exitError{code: 2, err: errors.New("1 key would change")}); code != 2 || b.String() != "geogate: 1 key would change\n" {
		t.Fatalf("exit status %d, output %q", code, b.String())
	}
}
