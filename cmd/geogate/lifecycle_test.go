package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
)

// TestLifecycleProcesses runs a secured two-region deployment as
// `geogate serve` processes and goes through the lifecycle from outside:
// backup (admin token), SIGKILL and a wiped disk, restore into the empty
// data directory (a new actor), restart: every record back, the writes the
// other region took meanwhile there, replication on; then a region killed
// for longer than its peer's stream retention rejoins by itself
// (re-seeding), and `geogate reseed` forces one and reports it.
func TestLifecycleProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two regions as processes, killed and restarted (about 30s); skipped with -short")
	}
	dir := filepath.Join(t.TempDir(), "deploy")
	base := freeBase(t)
	nodes := initDeployment(t, dir, "--regions", "us-east,eu-west", "--base-port", strconv.Itoa(base))
	us, eu := nodes[0], nodes[1]
	fast := []string{"--set", "replication.stream_max_age=3s", "--set", "replication.reseed_after=1s",
		"--set", "replication.heartbeat=200ms", "--set", "anti_entropy.interval=500ms"}
	usProc, _ := startNode(t, us.config, fast...)
	euProc, _ := startNode(t, eu.config, fast...)
	caFile := filepath.Join(dir, deploy.CAFile)
	hc := newClient(t, caFile, nil)
	writer := httpsClient{http: hc, token: readToken(t, dir, auth.Writer)}
	reader := httpsClient{http: hc, token: readToken(t, dir, auth.Reader)}
	adminFile := filepath.Join(dir, deploy.RoleTokenFile(auth.Admin))

	put := func(n initNode, key string) {
		t.Helper()
		if r := writer.do(t, "PUT", n.url+"/v1/kv/"+key, `{"at":"`+n.region+`"}`); r.status != 200 {
			t.Fatalf("PUT %s at %s: %d %s", key, n.region, r.status, r.body)
		}
	}
	keys := func(n initNode) int {
		t.Helper()
		r := reader.do(t, "GET", n.url+"/v1/kv?limit=10000", "")
		var page struct{ Keys []string }
		if r.status != 200 || json.Unmarshal(r.body, &page) != nil {
			t.Fatalf("list at %s: %d %s", n.region, r.status, r.body)
		}
		return len(page.Keys)
	}
	status := func(n initNode) map[string]any {
		t.Helper()
		var st map[string]any
		if r := reader.do(t, "GET", n.url+"/v1/status", ""); r.status != 200 || json.Unmarshal(r.body, &st) != nil {
			t.Fatalf("status of %s: %d", n.region, r.status)
		}
		return st
	}
	for i := range 30 {
		put(us, fmt.Sprintf("us/%02d", i))
		put(eu, fmt.Sprintf("eu/%02d", i))
	}
	eventually(t, 20*time.Second, "both regions to hold 60 keys", func() bool { return keys(us) == 60 && keys(eu) == 60 })

	// Backup, with the admin token; a reader's is refused.
	backup := filepath.Join(t.TempDir(), "us-east.geosnap")
	if _, stderr, err := runGeogate(t, "backup", "--url", us.url, "--out", backup, "--token", "@"+filepath.Join(dir, deploy.RoleTokenFile(auth.Reader)), "--ca", caFile); err == nil || !strings.Contains(stderr, "403") && !strings.Contains(stderr, "forbidden") {
		t.Fatalf("backup with a reader token: %v %q", err, stderr)
	}
	stdout, stderr, err := runGeogate(t, "backup", "--url", us.url, "--out", backup, "--token", "@"+adminFile, "--ca", caFile)
	if err != nil || !strings.Contains(stdout, "backup of us-east") || !strings.Contains(stdout, "60 records") {
		t.Fatalf("backup: %v\n%s%s", err, stdout, stderr)
	}
	put(us, "us/after-backup")
	eventually(t, 10*time.Second, "eu-west to apply us-east's write after the backup", func() bool { return keys(eu) == 61 })

	// us-east loses its disk; eu-west writes meanwhile.
	cfg, err := config.Load(us.config, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	oldActor, _ := status(us)["actor"].(string)
	usProc.Process.Signal(syscall.SIGKILL) //nolint:errcheck // it dies
	usProc.Wait()                          //nolint:errcheck // killed
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	put(eu, "eu/while-us-down")
	// A damaged backup is refused, and so is a non-empty data directory.
	damaged := filepath.Join(t.TempDir(), "cut.geosnap")
	b, _ := os.ReadFile(backup)
	os.WriteFile(damaged, b[:len(b)-9], 0o600) //nolint:errcheck // read back below
	if _, stderr, err := runGeogate(t, "restore", damaged, "--config", us.config); err == nil || !strings.Contains(stderr, "truncated") {
		t.Fatalf("restore of a cut backup: %v %q", err, stderr)
	}
	// Another region's config needs --other-region; a backup older than
	// tombstones.grace needs --force (each checked before anything is
	// written: the restore below still finds the directory empty).
	if _, stderr, err := runGeogate(t, "restore", backup, "--config", eu.config); err == nil || !strings.Contains(stderr, "pass --other-region") {
		t.Fatalf("restore of us-east's backup with eu-west's config: %v %q", err, stderr)
	}
	if _, stderr, err := runGeogate(t, "restore", backup, "--config", us.config, "--set", "tombstones.grace=1ms"); err == nil || !strings.Contains(stderr, "pass --force") {
		t.Fatalf("restore of a backup older than tombstones.grace: %v %q", err, stderr)
	}
	stdout, stderr, err = runGeogate(t, "restore", backup, "--config", us.config, "--set", "tombstones.grace=1ms", "--force")
	if err != nil || !strings.Contains(stdout, "restored") || !strings.Contains(stdout, "60 records") {
		t.Fatalf("restore: %v\n%s%s", err, stdout, stderr)
	}
	if _, stderr, err := runGeogate(t, "restore", backup, "--config", us.config); err == nil || !strings.Contains(stderr, "not empty") {
		t.Fatalf("restore into a restored data directory: %v %q", err, stderr)
	}
	startNode(t, us.config, fast...)
	newActor, _ := status(us)["actor"].(string)
	if newActor == oldActor || !strings.HasPrefix(newActor, "us-east~") {
		t.Fatalf("restored actor %q (was %q)", newActor, oldActor)
	}
	eventually(t, 30*time.Second, "the restored region to hold every record", func() bool { return keys(us) == 62 })
	for _, k := range []string{"us/after-backup", "eu/while-us-down", "us/00", "eu/29"} {
		if r := reader.do(t, "GET", us.url+"/v1/kv/"+k, ""); r.status != 200 {
			t.Fatalf("restored region: GET %s = %d", k, r.status)
		}
	}
	put(us, "us/restored")
	eventually(t, 10*time.Second, "eu-west to apply the restored region's write", func() bool { return keys(eu) == 63 })

	// eu-west away for longer than us-east's stream keeps events: it
	// rejoins by itself.
	euProc.Process.Signal(syscall.SIGKILL) //nolint:errcheck // it dies
	euProc.Wait()                          //nolint:errcheck // killed
	for i := range 20 {
		put(us, fmt.Sprintf("us/away-%02d", i))
	}
	time.Sleep(5 * time.Second) //nolint:forbidigo // outlive the 3s stream retention: the condition under test, not synchronisation
	startNode(t, eu.config, fast...)
	eventually(t, 30*time.Second, "eu-west to rejoin after the retention", func() bool { return keys(eu) == 83 })
	// The records are in before the re-seed has raised the watermarks and
	// recorded itself.
	eventually(t, 10*time.Second, "eu-west's re-seed recorded", func() bool {
		rs := status(eu)["lifecycle"].(map[string]any)["reseeds"].(map[string]any)["us-east"].(map[string]any)
		n, _ := rs["reseeds"].(float64)
		return n >= 1
	})

	// A forced re-seed, reported by the command.
	stdout, stderr, err = runGeogate(t, "reseed", "--from", "us-east", "--url", eu.url, "--token", "@"+adminFile, "--ca", caFile)
	if err != nil || !strings.Contains(stdout, "re-seeded eu-west from us-east: 83 records") {
		t.Fatalf("reseed: %v\n%s%s", err, stdout, stderr)
	}
}
