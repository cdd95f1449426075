package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology/link"
)

// lifecycleTune sets short lifecycle intervals on every region of a test
// cluster (and whatever else edit changes).
func lifecycleTune(edit func(c *config.Config)) func(*ClusterSpec) {
	return func(spec *ClusterSpec) {
		prev := spec.Tune
		spec.Tune = func(c *config.Config) {
			if prev != nil {
				prev(c)
			}
			c.Replication.Heartbeat = 200 * time.Millisecond
			c.Replication.ReseedAfter = time.Second
			c.AntiEntropy.Interval = 0
			if edit != nil {
				edit(c)
			}
		}
	}
}

func put(t testing.TB, n *Node, key, value string) {
	t.Helper()
	if a := do(t, "PUT", n.HTTPURL()+"/v1/kv/"+key, []byte(value)); a.status != http.StatusOK {
		t.Fatalf("PUT %s at %s: %d %s", key, n.cfg.Region, a.status, a.body)
	}
}

func digestHex(t testing.TB, n *Node) string {
	t.Helper()
	d, _, err := n.Store().Digest()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", d)
}

func sameData(t testing.TB, nodes ...*Node) func() bool {
	return func() bool {
		first := digestHex(t, nodes[0])
		for _, n := range nodes[1:] {
			if digestHex(t, n) != first {
				return false
			}
		}
		return true
	}
}

// streamFirstSeq returns the first sequence still held by n's stream.
func streamFirstSeq(t testing.TB, n *Node) uint64 {
	t.Helper()
	js, err := jetstream.New(n.conn)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), link.StreamName(n.cfg.Region))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.FirstSeq
}

func reseeds(n *Node, peer string) int { return n.Status().Lifecycle.Reseeds[peer].Reseeds }

// TestReseedAfterRetention: a link paused while its peer's stream drops
// what it held (stream_max_age 2s) cannot catch up from the stream; the
// region notices, shows the link "reseeding", merges a snapshot of the
// peer, and then replicates on from the snapshot's positions.
func TestReseedAfterRetention(t *testing.T) {
	c := startCluster(t, []string{"a", "b"}, "all-to-all", nil, lifecycleTune(func(c *config.Config) {
		c.Replication.StreamMaxAge = 2 * time.Second
	}))
	a, b := c.Node("a"), c.Node("b")
	put(t, a, "before", `{"n":0}`)
	eventually(t, 10*time.Second, "b to apply the first write", sameData(t, a, b))
	b.PauseLink("a")
	for i := range 50 {
		put(t, a, fmt.Sprintf("k/%02d", i), fmt.Sprintf(`{"n":%d}`, i))
	}
	seq := a.publisher.Load().Stats().LastStreamSeq
	eventually(t, 20*time.Second, "a's stream to drop the writes b has not read", func() bool { return streamFirstSeq(t, a) > seq })
	// The re-seed waits, once it began, until the test saw the link
	// "reseeding" in b's status.
	begun, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func(string) {
		once.Do(func() {
			close(begun)
			<-release
		})
	}
	b.life.reseedBegun.Store(&hold)
	b.ResumeLink("a")
	select {
	case <-begun:
	case <-time.After(30 * time.Second):
		t.Fatal("b did not begin a re-seed from a within 30s")
	}
	linkState := func() string {
		for _, l := range b.Status().Links {
			if l.From == "a" {
				return l.State
			}
		}
		return ""
	}
	if s := linkState(); s != link.StateReseeding {
		t.Fatalf("link a -> b is %q during the re-seed, want %q", s, link.StateReseeding)
	}
	close(release)
	eventually(t, 30*time.Second, "b to re-seed from a", func() bool { return reseeds(b, "a") >= 1 })
	if s := linkState(); s == link.StateReseeding {
		t.Fatalf("link a -> b still %q after the re-seed", s)
	}
	eventually(t, 10*time.Second, "a and b to converge", sameData(t, a, b))
	if _, ok, _ := b.Store().Get("k/49"); !ok {
		t.Fatal("b lacks a write of the trimmed stretch")
	}
	// The link goes on from the snapshot's positions.
	put(t, a, "after", `{"n":1}`)
	eventually(t, 10*time.Second, "b to apply a write after the re-seed", func() bool { _, ok, _ := b.Store().Get("after"); return ok })
	st := b.Status().Lifecycle.Reseeds["a"]
	if st.Last == nil || st.Last.Records < 51 || st.Last.Error != "" {
		t.Fatalf("re-seed status %+v", st)
	}
	t.Logf("re-seed: %+v", *st.Last)
}

// TestEmptyRegionJoins: a region whose disk was wiped comes back empty,
// with a new actor; the peer's stream no longer holds the history; it
// seeds itself from the peer's snapshot, including its own earlier writes,
// and then writes and replicates as a new actor.
func TestEmptyRegionJoins(t *testing.T) {
	c := startCluster(t, []string{"a", "b"}, "all-to-all", nil, lifecycleTune(func(c *config.Config) {
		c.Replication.StreamMaxAge = 2 * time.Second
	}))
	a, b := c.Node("a"), c.Node("b")
	for i := range 30 {
		put(t, a, fmt.Sprintf("a/%02d", i), `{"from":"a"}`)
		put(t, b, fmt.Sprintf("b/%02d", i), `{"from":"b"}`)
	}
	eventually(t, 10*time.Second, "a and b to converge", sameData(t, a, b))
	oldActor := b.Store().Actor()
	dir := b.cfg.DataDir
	if err := c.Stop("b"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	seq := a.publisher.Load().Stats().LastStreamSeq
	eventually(t, 20*time.Second, "a's stream to drop its history", func() bool { return streamFirstSeq(t, a) > seq })
	if err := c.StartRegion(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	b = c.Node("b")
	if b.Store().Actor() == oldActor {
		t.Fatal("the wiped region kept its actor")
	}
	eventually(t, 30*time.Second, "the empty region to seed itself from a", sameData(t, a, b))
	if _, ok, _ := b.Store().Get("b/29"); !ok {
		t.Fatal("b did not get back its own earlier writes")
	}
	put(t, b, "new", `{"from":"new b"}`)
	eventually(t, 10*time.Second, "a to apply the new actor's write", sameData(t, a, b))
}

// TestBackupRestore: a region's backup (GET /v1/admin/snapshot) restored
// into its wiped data directory: every record of the backup is back, the
// region writes under a new actor, its links resume from the backup's
// positions, and what the other region wrote meanwhile, and what this
// region wrote after the backup and had replicated, reaches it.
func TestBackupRestore(t *testing.T) {
	c := startCluster(t, []string{"a", "b"}, "all-to-all", nil, lifecycleTune(nil))
	a, b := c.Node("a"), c.Node("b")
	for i := range 40 {
		put(t, a, fmt.Sprintf("a/%02d", i), `{"from":"a"}`)
		put(t, b, fmt.Sprintf("b/%02d", i), `{"from":"b"}`)
	}
	eventually(t, 10*time.Second, "a and b to converge", sameData(t, a, b))
	resp, err := http.Get(a.HTTPURL() + "/v1/admin/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Geo-Region") != "a" {
		t.Fatalf("backup: %d %v", resp.StatusCode, err)
	}
	info, err := store.VerifySnapshot(bytes.NewReader(snap))
	if err != nil || info.Records != 80 {
		t.Fatalf("backup holds %d records (%v), want 80", info.Records, err)
	}
	file := filepath.Join(t.TempDir(), "a.geosnap")
	if err := os.WriteFile(file, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	// After the backup: a writes more (b applies it), then loses its disk;
	// b writes while a is down.
	put(t, a, "a/after-backup", `{"from":"a"}`)
	eventually(t, 10*time.Second, "b to apply a's write after the backup", sameData(t, a, b))
	oldActor := a.Store().Actor()
	dir := a.cfg.DataDir
	if err := c.Stop("a"); err != nil {
		t.Fatal(err)
	}
	put(t, b, "b/while-a-down", `{"from":"b"}`)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	res, err := store.Restore(context.Background(), store.Options{Dir: filepath.Join(dir, "store"), Region: "a", Clock: b.clock, SmallFootprint: true}, file)
	if err != nil {
		t.Fatal(err)
	}
	if res.Actor == oldActor || res.Snapshot.Records != 80 {
		t.Fatalf("restore: %+v (old actor %s)", res, oldActor)
	}
	if err := c.StartRegion(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	a = c.Node("a")
	if a.Store().Actor() != res.Actor {
		t.Fatalf("restored region writes as %s, want %s", a.Store().Actor(), res.Actor)
	}
	if p := a.Store().Applied()[oldActor]; p != info.Header.Positions[oldActor] {
		t.Fatalf("restored position of the old actor %d, want the backup's %d", p, info.Header.Positions[oldActor])
	}
	eventually(t, 30*time.Second, "the restored region to catch up", sameData(t, a, b))
	for _, k := range []string{"a/after-backup", "b/while-a-down", "a/00", "b/39"} {
		if _, ok, _ := a.Store().Get(k); !ok {
			t.Fatalf("restored region lacks %s", k)
		}
	}
	put(t, a, "a/restored", `{"from":"restored a"}`)
	eventually(t, 10*time.Second, "b to apply the restored region's write", sameData(t, a, b))
}

// TestAntiEntropyRepairsDamage: records removed and altered on a region's
// disk behind its back (store.Tamper) are found (the tree built at start,
// checksums) and repaired from the peer by anti-entropy, which counts them.
func TestAntiEntropyRepairsDamage(t *testing.T) {
	c := startCluster(t, []string{"a", "b"}, "all-to-all", nil, lifecycleTune(func(c *config.Config) {
		c.AntiEntropy.Interval = 300 * time.Millisecond
	}))
	a, b := c.Node("a"), c.Node("b")
	for i := range 200 {
		put(t, a, fmt.Sprintf("k/%03d", i), fmt.Sprintf(`{"n":%d}`, i))
	}
	eventually(t, 10*time.Second, "a and b to converge", sameData(t, a, b))
	dir := filepath.Join(b.cfg.DataDir, "store")
	if err := c.Stop("b"); err != nil {
		t.Fatal(err)
	}
	rep, err := store.Tamper(dir, 20, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartRegion(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	b = c.Node("b")
	eventually(t, 30*time.Second, "anti-entropy to repair b", sameData(t, a, b))
	eventually(t, 5*time.Second, "a full round", func() bool { return b.Status().Lifecycle.AntiEntropy.LastFullRound != nil })
	// Each side counts what it merged: b what it took from a (its corrupt
	// records, and removed ones if its round came first), a's pushes to b
	// count at b too.
	ae := b.Status().Lifecycle.AntiEntropy
	if ae.Repaired < uint64(len(rep.Removed)+len(rep.Altered)) {
		t.Fatalf("keys repaired = %d, want at least %d", ae.Repaired, len(rep.Removed)+len(rep.Altered))
	}
	if ae.Compared == 0 {
		t.Fatalf("no range compared: %+v", ae)
	}
	metrics := do(t, "GET", b.HTTPURL()+"/metrics", nil)
	for _, m := range []string{"geogate_antientropy_keys_repaired_total", "geogate_antientropy_ranges_compared_total", "geogate_corrupt_records_found_total"} {
		if !bytes.Contains(metrics.body, []byte(m+" ")) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if k, _ := b.Store().Suspects(); len(k) != 0 {
		t.Fatalf("corrupt records left: %q", k)
	}
}

// TestTombstonesCollected: in a ring (regions hear of the ones they do not
// pull from by gossip), a deleted key's record disappears everywhere once
// every region applied the delete (grace 0): ?meta=true answers 404 and
// anti-entropy does not bring it back; while one region has not applied
// it (its link paused), nobody collects it.
func TestTombstonesCollected(t *testing.T) {
	c := startCluster(t, []string{"a", "b", "c"}, "circular", nil, lifecycleTune(func(c *config.Config) {
		c.Tombstones.Grace = 0
		c.Tombstones.Interval = 200 * time.Millisecond
		c.AntiEntropy.Interval = 300 * time.Millisecond
	}))
	nodes := c.Nodes()
	a := c.Node("a")
	put(t, a, "gone", `{"v":1}`)
	put(t, a, "kept", `{"v":2}`)
	eventually(t, 10*time.Second, "the writes everywhere", sameData(t, nodes...))
	if st := do(t, "DELETE", a.HTTPURL()+"/v1/kv/gone", nil); st.status != http.StatusOK {
		t.Fatalf("delete: %d %s", st.status, st.body)
	}
	meta := func(n *Node, key string) int {
		return do(t, "GET", n.HTTPURL()+"/v1/kv/"+key+"?meta=true", nil).status
	}
	eventually(t, 20*time.Second, "the tombstone collected everywhere", func() bool {
		for _, n := range nodes {
			if meta(n, "gone") != http.StatusNotFound {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		if n.Status().Lifecycle.Tombstones.Collected < 1 {
			t.Errorf("%s reports no collection", n.cfg.Region)
		}
		if meta(n, "kept") != http.StatusOK {
			t.Errorf("%s lost a live key", n.cfg.Region)
		}
	}
	// Three anti-entropy rounds later it is still gone.
	rounds := map[*Node]int{}
	for _, n := range nodes {
		rounds[n] = n.Status().Lifecycle.AntiEntropy.Rounds
	}
	eventually(t, 10*time.Second, "three more anti-entropy rounds everywhere", func() bool {
		for _, n := range nodes {
			if n.Status().Lifecycle.AntiEntropy.Rounds < rounds[n]+3 {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		if got := meta(n, "gone"); got != http.StatusNotFound {
			t.Fatalf("%s answers %d for the collected key", n.cfg.Region, got)
		}
	}
	// c pulls from b: with that link paused, c never applies the next
	// delete, so no region may collect it.
	c.Node("c").PauseLink("b")
	put(t, a, "held", `{"v":3}`)
	if st := do(t, "DELETE", a.HTTPURL()+"/v1/kv/held", nil); st.status != http.StatusOK {
		t.Fatalf("delete: %d", st.status)
	}
	eventually(t, 10*time.Second, "b to apply the delete", func() bool {
		rec, ok, _ := c.Node("b").Store().Get("held")
		return ok && len(rec.Live()) == 0
	})
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if meta(a, "held") != http.StatusOK {
			t.Fatal("a collected a tombstone c has not applied")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Node("c").ResumeLink("b")
	eventually(t, 20*time.Second, "the tombstone collected once c applied it", func() bool {
		for _, n := range nodes {
			if meta(n, "held") != http.StatusNotFound {
				return false
			}
		}
		return true
	})
}

// TestCloseDuringStalledBackup: a backup download whose client stopped
// reading does not keep the region from stopping. Shutdown waits 10 s for
// requests under way, then cuts their connections, which ends the
// snapshot's store read that Close waits for.
func TestCloseDuringStalledBackup(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", nil)
	n := c.Node("solo")
	big := fmt.Sprintf(`{"pad":%q}`, bytes.Repeat([]byte("x"), 512<<10))
	for i := range 40 { // 20 MiB: more than the sockets' buffers hold
		put(t, n, fmt.Sprintf("big/%02d", i), big)
	}
	resp, err := http.Get(n.HTTPURL() + "/v1/admin/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("backup: %s", resp.Status)
	}
	// Read a little, then stop reading: the handler blocks on its writes.
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	began := time.Now()
	go func() { closed <- c.Stop("solo") }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the region stopped %v after Close began", time.Since(began).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("Close still waits 60 s after it began, for a backup download nobody reads")
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Fatal("the stalled download ended cleanly; want it cut (the snapshot has no end block)")
	}
}
