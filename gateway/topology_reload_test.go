package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology/link"
)

// writeRegionFile writes region's config file into dir (all-to-all,
// short lifecycle settings), naming every region of names.
func writeRegionFile(t *testing.T, dir, region string, names []string, ports map[string][2]int) string {
	t.Helper()
	return writeRegionFileWith(t, dir, region, names, ports, "", "1s")
}

// writeRegionFileWith is writeRegionFile with a topology section (YAML,
// empty for all-to-all) and replication.reseed_after.
func writeRegionFileWith(t *testing.T, dir, region string, names []string, ports map[string][2]int, topology, reseedAfter string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "region: %s\nregions:\n", region)
	for _, r := range names {
		fmt.Fprintf(&b, "  %s: { http: \"http://127.0.0.1:%d\", nats: \"nats://127.0.0.1:%d\" }\n", r, ports[r][0], ports[r][1])
	}
	b.WriteString(topology)
	fmt.Fprintf(&b, "data_dir: %s\nreplication: { heartbeat: 200ms, reseed_after: %s }\nlog: { level: error }\n", filepath.Join(dir, "data", region), reseedAfter)
	path := filepath.Join(dir, region+".yaml")
	// Write through a rename, as configuration tools do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func startFromFile(t *testing.T, path string) *Node {
	t.Helper()
	cfg, err := config.Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, Options{Logger: testLogger(), RulesFile: path, SmallFootprint: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background(), nil); err != nil {
		n.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func linkFroms(n *Node) []string {
	var out []string
	for _, l := range n.Status().Links {
		out = append(out, l.From)
	}
	slices.Sort(out)
	return out
}

// TestAddAndRemoveRegion adds a region to a running deployment by editing
// the other regions' config files (no restart): their links from it start,
// it seeds itself and converges; then removes a region the same way: the
// links from it stop and the outbox entries held for it are released.
func TestAddAndRemoveRegion(t *testing.T) {
	dir := t.TempDir()
	ports := map[string][2]int{}
	free, err := freePorts(6) // distinct: held open until all are taken
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []string{"a", "b", "c"} {
		ports[r] = [2]int{free[2*i], free[2*i+1]}
	}
	two := []string{"a", "b"}
	a := startFromFile(t, writeRegionFile(t, dir, "a", two, ports))
	b := startFromFile(t, writeRegionFile(t, dir, "b", two, ports))
	// Status reads all along, racing the reloads' changes to the regions'
	// addresses (the race detector watches them in CI).
	stopPolling, polled := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stopPolling:
				polled <- n
				return
			default:
			}
			if resp, err := http.Get(a.HTTPURL() + "/v1/status"); err == nil {
				io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the read matters
				resp.Body.Close()
				n++
			}
		}
	}()
	defer func() {
		close(stopPolling)
		if n := <-polled; n == 0 {
			t.Error("no status read succeeded during the reloads")
		}
	}()
	urls := func(n *Node) []string {
		var out []string
		for r := range do(t, "GET", n.HTTPURL()+"/v1/status", nil).json(t)["urls"].(map[string]any) {
			out = append(out, r)
		}
		slices.Sort(out)
		return out
	}
	for i := range 20 {
		put(t, a, fmt.Sprintf("k/%02d", i), `{"v":1}`)
	}
	eventually(t, 10*time.Second, "a and b to converge", sameData(t, a, b))

	// Add c: its own config names all three; then a's and b's files.
	three := []string{"a", "b", "c"}
	c := startFromFile(t, writeRegionFile(t, dir, "c", three, ports))
	writeRegionFile(t, dir, "a", three, ports)
	writeRegionFile(t, dir, "b", three, ports)
	eventually(t, 15*time.Second, "a and b to reload and pull from c", func() bool {
		return slices.Equal(linkFroms(a), []string{"b", "c"}) && slices.Equal(linkFroms(b), []string{"a", "c"})
	})
	if got := a.Status().Topology; !strings.Contains(got, "c") {
		t.Fatalf("a's topology after the reload: %q", got)
	}
	if got := urls(a); !slices.Equal(got, three) {
		t.Fatalf("a's status lists the URLs of %v after the reload, want %v", got, three)
	}
	eventually(t, 20*time.Second, "c to catch up", sameData(t, a, b, c))
	put(t, c, "from-c", `{"v":"c"}`)
	eventually(t, 10*time.Second, "c's write everywhere", sameData(t, a, b, c))

	// Remove b: stop it, write at a (held in a's outbox for b), then edit
	// the remaining files.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	put(t, a, "after-b", `{"v":2}`)
	eventually(t, 10*time.Second, "c to apply a's write", sameData(t, a, c))
	if a.Store().OutboxLen() == 0 {
		t.Fatal("a's outbox held nothing for b while b was down")
	}
	acOnly := []string{"a", "c"}
	writeRegionFile(t, dir, "a", acOnly, ports)
	writeRegionFile(t, dir, "c", acOnly, ports)
	eventually(t, 15*time.Second, "a and c to drop b", func() bool {
		return slices.Equal(linkFroms(a), []string{"c"}) && slices.Equal(linkFroms(c), []string{"a"})
	})
	eventually(t, 10*time.Second, "a's outbox holds for b released", func() bool { return a.Store().OutboxLen() == 0 })
	if got := urls(a); !slices.Equal(got, acOnly) {
		t.Fatalf("a's status lists the URLs of %v after b's removal, want %v", got, acOnly)
	}
	put(t, a, "after-removal", `{"v":3}`)
	eventually(t, 10*time.Second, "a and c to converge without b", sameData(t, a, c))
	if _, ok := a.Status().Lifecycle.Reseeds["b"]; ok {
		t.Fatal("a still reports a link from b")
	}

	// a's duties end and start again, as when a node of a region steps
	// down and later leads: the new run takes the reloaded plan (no hold
	// for b's consumer, which is gone), deletes a consumer for b that a
	// node not leading at the reload would have left, keeps c's, and
	// serves snapshots to peers again.
	js, err := jetstream.New(a.conn)
	if err != nil {
		t.Fatal(err)
	}
	leftover := link.ConsumerName("a", "b")
	if _, err := js.CreateConsumer(t.Context(), link.StreamName("a"), jetstream.ConsumerConfig{Durable: leftover, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	a.stopDuties(a.duty.Load())
	if _, err := a.startDuties(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the leftover consumer for b to be deleted", func() bool {
		_, err := js.Consumer(t.Context(), link.StreamName("a"), leftover)
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	})
	if _, err := js.Consumer(t.Context(), link.StreamName("a"), link.ConsumerName("a", "c")); err != nil {
		t.Fatalf("c's consumer on a's stream after a's duties restarted: %v", err)
	}
	put(t, a, "after-restart", `{"v":4}`)
	eventually(t, 10*time.Second, "a and c to converge after a's duties restarted", sameData(t, a, c))
	eventually(t, 10*time.Second, "a's outbox to empty (nothing held for the removed b)", func() bool { return a.Store().OutboxLen() == 0 })
	snap, err := c.life.fetchSnapshot(t.Context(), "a")
	if err != nil {
		t.Fatalf("c fetching a's snapshot after a's duties restarted: %v", err)
	}
	info, err := store.VerifySnapshot(snap)
	snap.Close()
	if err != nil || info.Records == 0 {
		t.Fatalf("a's snapshot after its duties restarted: %+v, %v", info, err)
	}
}

// writeStarRegionFile writes region's config file for a star with hub h.
func writeStarRegionFile(t *testing.T, dir, region string, names []string, ports map[string][2]int, reseedAfter string) string {
	t.Helper()
	return writeRegionFileWith(t, dir, region, names, ports, "topology: { kind: star, hub: h }\n", reseedAfter)
}

// TestStarSpokeGetsEarlierEventsOfNewSpoke: in a star h (hub), a, c,
// spoke d is added and the hub reloads first, so it forwards d's first
// writes while c's consumer on h's stream still filters d out and moves
// past them. When c reloads, its link carries d too: the consumer must
// start again from the stream's start (an updated filter would keep its
// position, and d's earlier writes would never reach c; every later
// write of d would wait behind that gap). Re-seeding, which would repair
// it late, is kept out of the way.
func TestStarSpokeGetsEarlierEventsOfNewSpoke(t *testing.T) {
	dir := t.TempDir()
	ports := map[string][2]int{}
	free, err := freePorts(8)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []string{"h", "a", "c", "d"} {
		ports[r] = [2]int{free[2*i], free[2*i+1]}
	}
	const never = "1h"
	three := []string{"a", "c", "h"}
	h := startFromFile(t, writeStarRegionFile(t, dir, "h", three, ports, never))
	a := startFromFile(t, writeStarRegionFile(t, dir, "a", three, ports, never))
	c := startFromFile(t, writeStarRegionFile(t, dir, "c", three, ports, never))
	put(t, a, "x", `{"v":1}`)
	put(t, h, "y", `{"v":1}`)
	eventually(t, 15*time.Second, "h, a, c converge", sameData(t, h, a, c))

	four := []string{"a", "c", "d", "h"}
	d := startFromFile(t, writeStarRegionFile(t, dir, "d", four, ports, never))
	writeStarRegionFile(t, dir, "h", four, ports, never) // the hub reloads first
	eventually(t, 15*time.Second, "h to pull from d", func() bool { return h.link("d") != nil })
	put(t, d, "from-d-1", `{"v":1}`)
	put(t, d, "from-d-2", `{"v":2}`)
	eventually(t, 15*time.Second, "h to apply d's writes", func() bool { _, ok, _ := h.Store().Get("from-d-2"); return ok })
	// c's consumer on h's stream passes over the forwarded messages: a
	// write at h after them reaches c.
	put(t, h, "after-d", `{"v":1}`)
	eventually(t, 15*time.Second, "c to apply h's later write", func() bool { _, ok, _ := c.Store().Get("after-d"); return ok })

	writeStarRegionFile(t, dir, "a", four, ports, never)
	writeStarRegionFile(t, dir, "c", four, ports, never)
	eventually(t, 15*time.Second, "c to reload", func() bool { return c.currentPlan().Has("d") })
	put(t, d, "from-d-3", `{"v":3}`)
	eventually(t, 20*time.Second, "c to apply d's writes, those forwarded before it reloaded included", func() bool {
		_, ok1, _ := c.Store().Get("from-d-1")
		_, ok3, _ := c.Store().Get("from-d-3")
		return ok1 && ok3
	})
	eventually(t, 20*time.Second, "every region to converge", sameData(t, h, a, c, d))
	if r := c.Status().Lifecycle.Reseeds["h"]; r.Reseeds != 0 {
		t.Fatalf("c re-seeded from h (%+v): the link should have delivered d's events", r)
	}
}
