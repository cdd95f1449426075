package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/testbed/diskfault"
	"github.com/geogate/geogate/topology/link"
)

// docOfSize returns a JSON string document whose stored form is exactly n
// bytes.
func docOfSize(n int) []byte {
	return []byte(`"` + strings.Repeat("x", n-2) + `"`)
}

// TestValueLimitReplicates: a document exactly at http.max_value_bytes
// (in its stored form) is accepted and replicated to the other region; one
// byte more is refused with 413, and so is a small body whose stored form
// (HTML-escaped) is over the limit. A limit on the body as sent would let
// through documents whose stored form no NATS server carries, stalling
// replication for good.
func TestValueLimitReplicates(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", nil)
	r1, r2 := c.Node("r1"), c.Node("r2")
	limit := int(r1.Config().HTTP.MaxValueBytes)
	key := strings.Repeat("k", MaxKeyBytes) // the longest key, too
	if a := do(t, "PUT", r1.HTTPURL()+"/v1/kv/"+key, docOfSize(limit)); a.status != 200 {
		t.Fatalf("a document of exactly the limit: %d %s", a.status, a.body)
	}
	if a := do(t, "PUT", r1.HTTPURL()+"/v1/kv/over", docOfSize(limit+1)); a.status != http.StatusRequestEntityTooLarge || a.json(t)["code"] != "too_large" {
		t.Fatalf("one byte over: %d %s", a.status, a.body)
	}
	escaped := []byte(`"` + strings.Repeat("<", limit/6+1) + `"`)
	if a := do(t, "PUT", r1.HTTPURL()+"/v1/kv/escaped", escaped); a.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("a %d-byte body stored as %d bytes: %d %s", len(escaped), 6*(limit/6+1)+2, a.status, a.body[:min(len(a.body), 200)])
	}
	do(t, "PUT", r1.HTTPURL()+"/v1/kv/after", []byte(`1`))
	eventually(t, 20*time.Second, "the largest document, and the write after it, at r2", func() bool {
		a := do(t, "GET", r2.HTTPURL()+"/v1/kv/after", nil)
		b, err := try("GET", r2.HTTPURL()+"/v1/kv/"+key, nil)
		return a.status == 200 && err == nil && b.status == 200 && len(bytes.TrimSpace(b.body)) == limit
	})
	if st := r1.Status(); st.Publisher.State != link.PublisherOK {
		t.Fatalf("publisher %+v", st.Publisher)
	}
}

// TestExternalNATSTooSmallIsRefused: an external NATS server whose
// max_payload cannot carry the largest document plus its event is refused
// at start, naming both numbers.
func TestExternalNATSTooSmallIsRefused(t *testing.T) {
	srv, err := link.StartServer(link.ServerOptions{Name: "small", Port: -1, StoreDir: t.TempDir()}) // NATS's default 1 MiB
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	spec := ClusterSpec{Regions: []string{"r1"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: t.TempDir(),
		Tune: func(cfg *config.Config) {
			cfg.NATS.Embedded, cfg.NATS.Listen, cfg.NATS.URL = false, "", srv.ClientURL()
		}}
	cfg, err := spec.RegionConfig(0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, Options{Logger: testLogger()})
	if err == nil || !strings.Contains(err.Error(), "max_payload (1048576)") || !strings.Contains(err.Error(), "http.max_value_bytes (1048576)") {
		t.Fatalf("New = %v, want a refusal naming max_payload 1048576 and http.max_value_bytes", err)
	}
}

// TestForgedTokensRefused replays the forged-context data loss through the
// API: a context naming this region's own actor at 2^64-1 (the write's dot
// would wrap to 0, and that write and every later one of the key would
// vanish) or at a counter it never wrote is refused, as are tokens
// altered, signed by another deployment, or signed with a key this region
// does not hold; later writes of the key stay visible.
func TestForgedTokensRefused(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", []rules.Spec{{Name: "s", Match: "true", Strategy: "siblings"}})
	n := c.Node("solo")
	base := n.HTTPURL() + "/v1/kv/k"
	first := do(t, "PUT", base, []byte(`1`)).json(t)
	actor := n.Store().Actor()
	signed := func(keys *TokenKeys, vv conflict.VV) string {
		return conflict.SignToken(conflict.TokenContext, keys.keys[0], "k", vv)
	}
	mine := n.tokens.current()
	other, _ := NewTokenKeys(bytes.Repeat([]byte{7}, 32))
	ctx := first["context"].(string)
	raw, _ := conflict.DecodeToken(ctx)
	raw[len(raw)-20] ^= 1 // alter the vector under the MAC
	for _, tc := range []struct {
		name, token, code string
		status            int
	}{
		{"own actor at 2^64-1", signed(mine, conflict.VV{actor: 1<<64 - 1}), "bad_context", 400},
		{"own actor beyond its log", signed(mine, conflict.VV{actor: 99}), "bad_context", 400},
		{"another actor never applied", signed(mine, conflict.VV{"elsewhere~1": 5}), "stale_context", 503},
		{"altered token", conflict.EncodeToken(raw), "bad_context", 400},
		{"another deployment's token", signed(other, conflict.VV{actor: 1}), "bad_context", 400},
	} {
		a := do(t, "PUT", base, []byte(`"forged"`), HeaderContext, tc.token, HeaderWait, "100")
		if a.status != tc.status || a.json(t)["code"] != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, a.status, a.body, tc.status, tc.code)
		}
	}
	do(t, "PUT", base, []byte(`2`), HeaderContext, ctx)
	do(t, "PUT", base, []byte(`3`))
	a := do(t, "GET", base, nil)
	if a.status != 300 || !strings.Contains(string(a.body), "2") || !strings.Contains(string(a.body), "3") || strings.Contains(string(a.body), "forged") {
		t.Fatalf("after the forgeries: %d %s, want siblings 2 and 3", a.status, a.body)
	}
	m := do(t, "GET", n.HTTPURL()+"/metrics", nil)
	for _, want := range []string{`geogate_token_rejections_total{kind="context",reason="forged"} 1`, `geogate_token_rejections_total{kind="context",reason="unknown_key"} 1`, `geogate_token_rejections_total{kind="context",reason="malformed"} 1`, `geogate_context_refusals_total{reason="own_log"} 1`} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestTokenKeyRotation: a region reads security.token_keys_file at start
// and again when it changes; with the new key put first, tokens signed by
// the old key are still accepted (the grace period) and new tokens are
// signed with the new key; once the old key is removed, its tokens are
// refused.
func TestTokenKeyRotation(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "token.keys")
	oldKey, _ := GenerateTokenKey()
	newKey, _ := GenerateTokenKey()
	write := func(lines ...string) {
		if err := os.WriteFile(keyFile+".tmp", []byte("# token keys\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(keyFile+".tmp", keyFile); err != nil {
			t.Fatal(err)
		}
	}
	write(oldKey)
	c := startCluster(t, []string{"solo"}, "all-to-all", nil, func(s *ClusterSpec) {
		s.Tune = func(cfg *config.Config) { cfg.Security.TokenKeysFile = keyFile }
	})
	n := c.Node("solo")
	if n.tokens.current().Insecure {
		t.Fatal("the region ignored security.token_keys_file")
	}
	base := n.HTTPURL() + "/v1/kv/k"
	oldCtx := do(t, "PUT", base, []byte(`1`)).json(t)["context"].(string)
	write(newKey, oldKey)
	eventually(t, 5*time.Second, "the new key to sign", func() bool {
		tok := do(t, "GET", base, nil).header.Get(HeaderContext)
		return tok != "" && tok != oldCtx && len(n.tokens.current().keys) == 2
	})
	if a := do(t, "PUT", base, []byte(`2`), HeaderContext, oldCtx); a.status != 200 {
		t.Fatalf("a token of the old key during the grace period: %d %s", a.status, a.body)
	}
	write(newKey)
	eventually(t, 5*time.Second, "the old key to be dropped", func() bool { return len(n.tokens.current().keys) == 1 })
	if a := do(t, "PUT", base, []byte(`3`), HeaderContext, oldCtx); a.status != 400 || !strings.Contains(string(a.body), "key this region does not hold") {
		t.Fatalf("a token of the removed key: %d %s", a.status, a.body)
	}
	write("not a key")
	eventually(t, 5*time.Second, "the bad key file to be refused", func() bool {
		return strings.Contains(string(do(t, "GET", n.HTTPURL()+"/metrics", nil).body), `geogate_token_key_reloads_total{result="error"} 1`)
	})
	newCtx := do(t, "GET", base, nil).header.Get(HeaderContext)
	if a := do(t, "PUT", base, []byte(`4`), HeaderContext, newCtx); a.status != 200 {
		t.Fatalf("after a bad key file: %d %s", a.status, a.body)
	}
}

// TestContextFromAnotherRegionWaits: a context read at one region and
// used at another that has not applied the version it names waits for it
// (like a session read) and then supersedes it; when it does not arrive
// within X-Geo-Wait the write is refused with 503 stale_context naming
// what is missing.
func TestContextFromAnotherRegionWaits(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", nil)
	r1, r2 := c.Node("r1"), c.Node("r2")
	pause(t, r2, "r1")
	ctx := do(t, "PUT", r1.HTTPURL()+"/v1/kv/k", []byte(`1`)).json(t)["context"].(string)
	a := do(t, "PUT", r2.HTTPURL()+"/v1/kv/k", []byte(`2`), HeaderContext, ctx, HeaderWait, "200")
	if a.status != http.StatusServiceUnavailable || a.json(t)["code"] != "stale_context" || !strings.Contains(string(a.body), r1.Store().Actor()) {
		t.Fatalf("a context ahead of r2: %d %s", a.status, a.body)
	}
	done := make(chan answer, 1)
	go func() {
		a, err := try("PUT", r2.HTTPURL()+"/v1/kv/k", []byte(`2`), HeaderContext, ctx, HeaderWait, "10000")
		if err != nil {
			a = answer{status: -1, body: []byte(err.Error())}
		}
		done <- a
	}()
	holds(t, 300*time.Millisecond, "the write to wait for the version its context names", func() bool { return len(done) == 0 })
	resume(t, r2, "r1")
	if a := <-done; a.status != 200 {
		t.Fatalf("the same write once r2 catches up: %d %s", a.status, a.body)
	}
	waitConverged(t, c, 10*time.Second)
	if g := do(t, "GET", r1.HTTPURL()+"/v1/kv/k", nil); strings.TrimSpace(string(g.body)) != "2" {
		t.Fatalf("r1 reads %d %s, want the superseding write", g.status, g.body)
	}
}

// TestSmallInputFaults: X-Geo-Wait that would overflow a duration is
// capped at sessions.max_wait (not turned negative, which would answer 503
// at once), and a body with invalid UTF-8 inside a JSON string is refused.
func TestSmallInputFaults(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", nil, func(s *ClusterSpec) {
		s.Tune = func(cfg *config.Config) {
			cfg.Sessions.DefaultWait, cfg.Sessions.MaxWait, cfg.HTTP.WriteTimeout = 100*time.Millisecond, 300*time.Millisecond, time.Second
		}
	})
	n := c.Node("solo")
	tok := n.tokens.encodeSession(conflict.VV{"elsewhere~1": 5})
	start := time.Now()
	a := do(t, "GET", n.HTTPURL()+"/v1/kv/x", nil, HeaderSession, tok, HeaderWait, "9223372036855")
	if a.status != 503 || a.json(t)["code"] != "stale" || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("X-Geo-Wait 9223372036855: %d %s after %s, want 503 stale after sessions.max_wait", a.status, a.body, time.Since(start))
	}
	for _, body := range [][]byte{[]byte("\"a\xff\xfeb\""), []byte("{\"k\":\"\xc3\"}")} {
		if a := do(t, "PUT", n.HTTPURL()+"/v1/kv/u", body); a.status != 400 || a.json(t)["code"] != "bad_json" || !strings.Contains(string(a.body), "UTF-8") {
			t.Fatalf("invalid UTF-8 %q: %d %s", body, a.status, a.body)
		}
	}
}

// TestPoisonEventStallsRegionLink publishes an event no geogate writes
// (a format from a newer version) into a region's stream, as a peer would:
// the receiving region's link retries it a few times, then stalls, and its
// status says which event and why; writes published after it wait (they
// are never skipped past it) and arrive once the link is resumed and the
// event taken away.
func TestPoisonEventStallsRegionLink(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", nil)
	r1, r2 := c.Node("r1"), c.Node("r2")
	do(t, "PUT", r1.HTTPURL()+"/v1/kv/before", []byte(`1`))
	eventually(t, 10*time.Second, "r2 to apply the first write", func() bool { return do(t, "GET", r2.HTTPURL()+"/v1/kv/before", nil).status == 200 })
	nc, err := nats.Connect(r1.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The next position of a fictitious origin, so r2's link has it next.
	poison := &nats.Msg{Subject: link.Subject("r1", "r1"), Data: []byte{0xE2, 1, 2, 3}, Header: nats.Header{
		link.HeaderMsgID: {link.MsgID("r1~future", 1)}, link.HeaderPath: {"r1"}}}
	if _, err := nc.RequestMsg(poison, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var st link.LinkStatus
	eventually(t, 30*time.Second, "r2's link from r1 to stall", func() bool {
		st = r2.link("r1").Status()
		return st.State == link.StateStalled
	})
	if st.Stall.Origin != "r1~future" || st.Stall.OSeq != 1 || !strings.Contains(st.Stall.Reason, "newer than this build reads") {
		t.Fatalf("stall %+v", st.Stall)
	}
	s := do(t, "GET", r2.HTTPURL()+"/v1/status", nil)
	if !strings.Contains(string(s.body), `"state":"stalled"`) || !strings.Contains(string(s.body), "r1~future") {
		t.Fatalf("status does not show the stall: %s", s.body)
	}
	if m := do(t, "GET", r2.HTTPURL()+"/metrics", nil); !strings.Contains(string(m.body), `geogate_link_stalled{from="r1"} 1`) {
		t.Fatal("metrics do not show the stall")
	}
	do(t, "PUT", r1.HTTPURL()+"/v1/kv/after", []byte(`2`))
	holds(t, 300*time.Millisecond, "nothing pulled past the stall", func() bool { return do(t, "GET", r2.HTTPURL()+"/v1/kv/after", nil).status == 404 })
	// The operator takes the event away (here: deletes it from the
	// stream) and resumes the link.
	js, _ := nats.Connect(r1.NATSURL())
	defer js.Close()
	if _, err := js.Request("$JS.API.STREAM.MSG.DELETE."+link.StreamName("r1"), []byte(fmt.Sprintf(`{"seq":%d}`, st.Stall.StreamSeq)), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if a := do(t, "POST", r2.HTTPURL()+"/v1/admin/links/r1/resume", nil); a.status != 200 {
		t.Fatalf("resume: %d %s", a.status, a.body)
	}
	eventually(t, 20*time.Second, "the write after the poison event at r2", func() bool { return do(t, "GET", r2.HTTPURL()+"/v1/kv/after", nil).status == 200 })
}

// TestDiskFullRegion runs a region whose data directory is a real small
// filesystem (tmpfs) and fills it: local writes get 507
// insufficient_storage, reads go on, the inbound link shows itself blocked
// with the reason, status and metrics say why, and once space is freed the
// region takes writes again and the peer's writes arrive.
func TestDiskFullRegion(t *testing.T) {
	root := t.TempDir()
	fs := filepath.Join(root, "r2")
	unmount, err := diskfault.MountTmpfs(fs, 256<<20)
	if errors.Is(err, diskfault.ErrUnsupported) {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmount() }) //nolint:errcheck // best effort after the regions closed
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", nil, func(s *ClusterSpec) {
		s.DataDir = root
		s.Tune = func(cfg *config.Config) {
			cfg.Storage.MinFreeBytes = 96 << 20
			cfg.Replication.StreamMaxBytes = 16 << 20 // JetStream reserves it on the small disk
		}
	})
	r1, r2 := c.Node("r1"), c.Node("r2")
	do(t, "PUT", r2.HTTPURL()+"/v1/kv/before", []byte(`1`))
	release, err := diskfault.Fill(fs, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "r2 to refuse writes", func() bool {
		a := do(t, "PUT", r2.HTTPURL()+"/v1/kv/during", []byte(`2`))
		return a.status == http.StatusInsufficientStorage && a.json(t)["code"] == "insufficient_storage"
	})
	if a := do(t, "GET", r2.HTTPURL()+"/v1/kv/before", nil); a.status != 200 {
		t.Fatalf("read on a full disk: %d %s", a.status, a.body)
	}
	do(t, "PUT", r1.HTTPURL()+"/v1/kv/from-r1", []byte(`3`))
	eventually(t, 10*time.Second, "r2's link to show itself blocked", func() bool {
		st := r2.link("r1").Status()
		return st.State == link.StateBlocked && strings.Contains(st.Reason, "insufficient storage")
	})
	var status StatusReport
	if err := json.Unmarshal(do(t, "GET", r2.HTTPURL()+"/v1/status", nil).body, &status); err != nil {
		t.Fatal(err)
	}
	if status.Storage.State != "low_space" || !strings.Contains(status.Storage.Reason, "min_free_bytes") {
		t.Fatalf("status storage %+v", status.Storage)
	}
	if m := do(t, "GET", r2.HTTPURL()+"/metrics", nil); !strings.Contains(string(m.body), "geogate_storage_state 1") {
		t.Fatal("metrics do not show low space")
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "r2 to take writes again", func() bool { return do(t, "PUT", r2.HTTPURL()+"/v1/kv/after", []byte(`4`)).status == 200 })
	eventually(t, 20*time.Second, "r1's write to reach r2", func() bool { return do(t, "GET", r2.HTTPURL()+"/v1/kv/from-r1", nil).status == 200 })
	waitConverged(t, c, 20*time.Second)
}

// TestAheadOfMost: the verdict on a clock from its peers' offsets.
func TestAheadOfMost(t *testing.T) {
	now := time.Now()
	m := func(off, unc time.Duration, age time.Duration) peerOffset {
		return peerOffset{Offset: off, Uncertainty: unc, At: now.Add(-age)}
	}
	const skew, fresh = 5 * time.Second, 10 * time.Second
	for _, tc := range []struct {
		name    string
		offsets map[string]peerOffset
		peers   int
		ahead   bool
	}{
		{"both peers an hour behind", map[string]peerOffset{"a": m(-time.Hour, 0, 0), "b": m(-time.Hour, 0, 0)}, 2, true},
		{"one of two peers behind", map[string]peerOffset{"a": m(-time.Hour, 0, 0), "b": m(0, 0, 0)}, 2, false},
		{"the only peer behind (two regions)", map[string]peerOffset{"a": m(-time.Hour, 0, 0)}, 1, true},
		{"the other region is the one ahead", map[string]peerOffset{"a": m(time.Hour, 0, 0)}, 1, false},
		{"within the bound", map[string]peerOffset{"a": m(-4*time.Second, 0, 0), "b": m(-4*time.Second, 0, 0)}, 2, false},
		{"beyond the bound only within the uncertainty", map[string]peerOffset{"a": m(-6*time.Second, 2*time.Second, 0), "b": m(-6*time.Second, 2*time.Second, 0)}, 2, false},
		{"stale measurements do not count", map[string]peerOffset{"a": m(-time.Hour, 0, time.Minute), "b": m(-time.Hour, 0, time.Minute)}, 2, false},
		{"a peer not measured counts as not behind", map[string]peerOffset{"a": m(-time.Hour, 0, 0)}, 2, false},
	} {
		if got, _ := aheadOfMost(tc.offsets, tc.peers, skew, fresh, now); got != tc.ahead {
			t.Errorf("%s: ahead = %v, want %v", tc.name, got, tc.ahead)
		}
	}
}

// TestClockAheadRefusesWrites: a region whose clock runs an hour ahead of
// its two peers measures it within a few heartbeats and refuses local
// writes with 503 clock_skew (the others keep writing); once its clock is
// corrected it takes writes again, and their HLCs are within
// replication.max_clock_skew of real time (they do not win every
// last-write-wins race for the next hour).
func TestClockAheadRefusesWrites(t *testing.T) {
	var skew atomic.Int64 // milliseconds added to r3's clock
	c := startCluster(t, []string{"r1", "r2", "r3"}, "all-to-all", nil, func(s *ClusterSpec) {
		s.Options = func(region string) Options {
			o := Options{Logger: testLogger()}
			if region == "r3" {
				o.Clock = func() time.Time { return time.Now().Add(time.Duration(skew.Load()) * time.Millisecond) }
			}
			return o
		}
		s.Tune = func(cfg *config.Config) { cfg.Replication.Heartbeat = 200 * time.Millisecond }
	})
	r1, r3 := c.Node("r1"), c.Node("r3")
	skew.Store(time.Hour.Milliseconds())
	var a answer
	eventually(t, 10*time.Second, "r3 to refuse writes", func() bool {
		a = do(t, "PUT", r3.HTTPURL()+"/v1/kv/k", []byte(`"from r3"`))
		return a.status == http.StatusServiceUnavailable
	})
	if a.json(t)["code"] != "clock_skew" {
		t.Fatalf("r3 refused with %s", a.body)
	}
	if st := r3.Status().Clock; !st.Refusing || st.AheadBySeconds < 3500 || len(st.Peers) != 2 {
		t.Fatalf("r3 clock status %+v", st)
	}
	if b := do(t, "PUT", r1.HTTPURL()+"/v1/kv/k", []byte(`"from r1"`)); b.status != 200 {
		t.Fatalf("r1 refused: %d %s", b.status, b.body)
	}
	if m := do(t, "GET", r3.HTTPURL()+"/metrics", nil); !strings.Contains(string(m.body), "geogate_clock_skew_refusing 1") {
		t.Fatal("metrics do not show the refusal")
	}
	skew.Store(0)
	eventually(t, 10*time.Second, "r3 to take writes again", func() bool {
		return do(t, "PUT", r3.HTTPURL()+"/v1/kv/after", []byte(`1`)).status == 200
	})
	meta := do(t, "GET", r3.HTTPURL()+"/v1/kv/after?meta=true", nil).json(t)
	hlc := int64(meta["versions"].([]any)[0].(map[string]any)["hlc"].(map[string]any)["w"].(float64))
	if ahead := time.Duration(hlc-time.Now().UnixMilli()) * time.Millisecond; ahead > r3.Config().Replication.MaxClockSkew {
		t.Fatalf("a write after the correction is stamped %s ahead of real time, beyond the bound", ahead)
	}
}
