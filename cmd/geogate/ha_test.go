package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/deploy"
)

// try sends one request and returns the answer, or the transport error;
// unlike do it fails nothing (a node may be dead or frozen).
func (c httpsClient) try(ctx context.Context, method, u, body string) (reply, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return reply{}, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}, err
}

// haNode is one `geogate serve` process of a region of several nodes.
type haNode struct {
	initNode
	cmd  *exec.Cmd
	logs *syncBuffer
}

// acked is what a load acknowledged: each key's value, and every dot a
// write answer named (with the value it wrote).
type acked struct {
	mu     sync.Mutex
	values map[string]string
	dots   map[string]string
	errs   map[string]int // status and code (0: transport) of refused writes
	twice  []string
	// inflight is, per load worker, the request it waits on (for the
	// failure report).
	inflight map[int]string
}

func (a *acked) note(key, value string, r reply) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.status != http.StatusOK {
		var e struct{ Code string }
		_ = json.Unmarshal(r.body, &e)
		a.errs[fmt.Sprintf("%d %s", r.status, e.Code)]++
		return
	}
	var ans struct{ Dot string }
	_ = json.Unmarshal(r.body, &ans)
	if prev, dup := a.dots[ans.Dot]; dup && prev != value {
		a.twice = append(a.twice, fmt.Sprintf("%s: %s and %s", ans.Dot, prev, value))
	}
	a.dots[ans.Dot], a.values[key] = value, value
}

// TestRegionNodesProcesses runs a region of three secured `geogate serve`
// processes, as `geogate init --nodes 3` writes them, with the default
// election settings, under a write load spread over every node, and
// checks from outside: the leader killed with SIGKILL is replaced within
// 10 s and no acknowledged write is lost; a leader frozen with SIGSTOP
// until another is elected, then resumed, acknowledges nothing the region
// lacks and becomes a follower; a follower killed and restarted catches
// up; no dot is ever minted twice.
func TestRegionNodesProcesses(t *testing.T) {
	if raceEnabled {
		// Its nodes would be race-instrumented copies of this binary: the
		// test measures failover times, which the detector's slowdown
		// (several times, on two cores) makes meaningless. The in-process
		// tests of regions of several nodes run under the detector.
		t.Skip("timing-bound process test; runs without -race")
	}
	if testing.Short() {
		t.Skip("runs three nodes as processes, killed, frozen and restarted (about 60s); skipped with -short")
	}
	dir := filepath.Join(t.TempDir(), "deploy")
	base := freeBase(t)
	var nodes []*haNode
	for _, n := range initDeployment(t, dir, "--regions", "a", "--nodes", "3", "--base-port", strconv.Itoa(base)) {
		nodes = append(nodes, &haNode{initNode: n})
	}
	if len(nodes) != 3 || nodes[0].name != "a-1" || nodes[2].name != "a-3" {
		t.Fatalf("init --nodes 3 wrote %+v", nodes)
	}
	starts := 0
	start := func(n *haNode) {
		t.Helper()
		if dbg := os.Getenv("GEOGATE_HA_LOGS"); dbg != "" && n.logs != nil {
			starts++                                                                                                   // keep the log of the node's previous run
			os.WriteFile(filepath.Join(dbg, fmt.Sprintf("%s.%d.log", n.name, starts)), []byte(n.logs.String()), 0o644) //nolint:errcheck // debugging aid
		}
		n.cmd, n.logs = startNode(t, n.config)
	}
	for _, n := range nodes {
		start(n)
	}
	hc := newClient(t, filepath.Join(dir, deploy.CAFile), nil)
	hc.Timeout = 0 // requests to a frozen node wait; contexts bound them
	writer := httpsClient{http: hc, token: readToken(t, dir, auth.Writer)}
	reader := httpsClient{http: hc, token: readToken(t, dir, auth.Reader)}
	type status struct {
		Node, Role, Leader string
		Term               uint64
		RegionLog          struct {
			Position      uint64 `json:"position"`
			LagEntries    uint64 `json:"lag_entries"`
			FailoverReady bool   `json:"failover_ready"`
		} `json:"region_log"`
	}
	statusOf := func(n *haNode) (status, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := reader.try(ctx, "GET", n.url+"/v1/status", "")
		var st status
		if err != nil || r.status != 200 || json.Unmarshal(r.body, &st) != nil {
			return st, false
		}
		return st, true
	}
	// leader waits until the running nodes agree on one leader among them.
	leader := func(within time.Duration, running ...*haNode) *haNode {
		t.Helper()
		var l *haNode
		defer func() {
			if t.Failed() {
				for _, n := range running {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					r, err := reader.try(ctx, "GET", n.url+"/v1/status", "")
					cancel()
					t.Logf("%s: %v %s\nlogs:\n%s", n.name, err, r.body, tail(n.logs.String(), 3000))
				}
			}
		}()
		eventually(t, within, "the nodes to agree on a leader", func() bool {
			l = nil
			for _, n := range running {
				st, ok := statusOf(n)
				if !ok || st.Leader == "" {
					return false
				}
				if st.Role == "leader" {
					if l != nil {
						return false
					}
					l = n
				}
				for _, m := range running {
					if m.name == st.Leader && st.Leader != n.name && st.Role == "leader" {
						return false
					}
				}
			}
			return l != nil
		})
		return l
	}
	// GEOGATE_HA_LOGS=DIR keeps every node's log there.
	if dbg := os.Getenv("GEOGATE_HA_LOGS"); dbg != "" {
		defer func() {
			for _, n := range nodes {
				os.WriteFile(filepath.Join(dbg, n.name+".log"), []byte(n.logs.String()), 0o644) //nolint:errcheck // debugging aid
			}
		}()
	}
	first := leader(30*time.Second, nodes...)
	t.Logf("%s leads", first.name)
	// Right after an election the region's JetStream streams may still
	// have their own leaders on the new leader's server; until they are
	// moved, its loss also waits for JetStream's elections.
	eventually(t, 20*time.Second, first.name+" ready for a fast failover", func() bool {
		st, ok := statusOf(first)
		return ok && st.Role == "leader" && st.RegionLog.FailoverReady
	})

	ack := &acked{values: map[string]string{}, dots: map[string]string{}, errs: map[string]int{}, inflight: map[int]string{}}
	var next sync.Mutex
	seq := 0
	load := func(ctx context.Context, targets []*haNode) *sync.WaitGroup {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					next.Lock()
					seq++
					k := seq
					next.Unlock()
					key, value := fmt.Sprintf("load/%05d", k), fmt.Sprintf(`{"k":%d}`, k)
					target := targets[(w+i)%len(targets)]
					ack.mu.Lock()
					ack.inflight[w] = fmt.Sprintf("PUT %s at %s since %s", key, target.name, time.Now().Format("15:04:05.000"))
					ack.mu.Unlock()
					rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
					r, err := writer.try(rctx, "PUT", target.url+"/v1/kv/"+key, value)
					cancel()
					ack.mu.Lock()
					delete(ack.inflight, w)
					ack.mu.Unlock()
					if err != nil {
						r = reply{}
					}
					ack.note(key, value, r)
					if r.status != http.StatusOK {
						time.Sleep(50 * time.Millisecond) //nolint:forbidigo // a client's pause before retrying elsewhere, not synchronisation
					}
				}
			})
		}
		return &wg
	}
	// missing returns the acknowledged keys n does not hold with the value
	// acknowledged.
	missing := func(n *haNode) []string {
		ack.mu.Lock()
		want := make(map[string]string, len(ack.values))
		for k, v := range ack.values {
			want[k] = v
		}
		ack.mu.Unlock()
		var out []string
		for k, v := range want {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := reader.try(ctx, "GET", n.url+"/v1/kv/"+k, "")
			cancel()
			if err != nil || r.status != 200 || strings.TrimSpace(string(r.body)) != v {
				out = append(out, k)
			}
		}
		return out
	}

	// 1. The leader is killed under load.
	ctx, stopLoad := context.WithCancel(context.Background())
	wg := load(ctx, nodes)
	eventually(t, 10*time.Second, "writes under way", func() bool { ack.mu.Lock(); defer ack.mu.Unlock(); return len(ack.values) > 50 })
	rest := others(nodes, first)
	before := len(ack.values)
	killed := time.Now()
	first.cmd.Process.Signal(syscall.SIGKILL) //nolint:errcheck // it dies
	first.cmd.Wait()                          //nolint:errcheck // killed
	second := leader(15*time.Second, rest...)
	var took time.Duration
	eventually(t, 15*time.Second, "a write at the new leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		r, err := writer.try(ctx, "PUT", second.url+"/v1/kv/probe", `"after the kill"`)
		took = time.Since(killed)
		return err == nil && r.status == 200
	})
	t.Logf("SIGKILL of leader %s at %s: %s leads, takes writes %s after the kill", first.name, killed.Format("15:04:05.000"), second.name, took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("a new leader took writes %s after the kill; the bound is 10s", took)
	}
	eventually(t, 10*time.Second, "more writes after the failover", func() bool {
		ack.mu.Lock()
		defer ack.mu.Unlock()
		if len(ack.values) <= before+50 {
			t.Logf("%d acknowledged; refused %v; waiting: %v", len(ack.values), ack.errs, ack.inflight)
			return false
		}
		return true
	})
	stopLoad()
	wg.Wait()
	for _, n := range rest {
		eventually(t, 20*time.Second, "every acknowledged write at "+n.name, func() bool { return len(missing(n)) == 0 })
	}

	// The killed leader comes back as a follower and catches up.
	start(first)
	eventually(t, 30*time.Second, first.name+" back as a follower, caught up", func() bool {
		st, ok := statusOf(first)
		return ok && st.Role == "follower" && st.Leader == second.name && len(missing(first)) == 0
	})

	// 2. The leader is frozen until another is elected, then resumed.
	frozen := second
	ctx, stopLoad = context.WithCancel(context.Background())
	wg = load(ctx, []*haNode{frozen}) // writes that reach it while it is frozen wait in its sockets
	eventually(t, 10*time.Second, "writes at "+frozen.name, func() bool { ack.mu.Lock(); defer ack.mu.Unlock(); return len(ack.values) > before+150 })
	frozen.cmd.Process.Signal(syscall.SIGSTOP) //nolint:errcheck // frozen
	third := leader(20*time.Second, others(nodes, frozen)...)
	t.Logf("SIGSTOP of leader %s: %s leads", frozen.name, third.name)
	if r, err := writer.try(context.Background(), "PUT", third.url+"/v1/kv/while-frozen", `"x"`); err != nil || r.status != 200 {
		t.Fatalf("write at the new leader while the old one is frozen: %v %d %s", err, r.status, r.body)
	}
	frozen.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // resumed
	eventually(t, 20*time.Second, frozen.name+" to follow "+third.name, func() bool {
		st, ok := statusOf(frozen)
		return ok && st.Role == "follower" && st.Leader == third.name
	})
	stopLoad()
	wg.Wait()
	// Whatever the resumed node acknowledged, the region has.
	for _, n := range nodes {
		eventually(t, 20*time.Second, "every acknowledged write at "+n.name, func() bool { return len(missing(n)) == 0 })
	}

	// 3. A follower is killed, the region writes on, it comes back.
	victim := others(nodes, third)[0]
	victim.cmd.Process.Signal(syscall.SIGKILL) //nolint:errcheck // it dies
	victim.cmd.Wait()                          //nolint:errcheck // killed
	ctx, stopLoad = context.WithCancel(context.Background())
	wg = load(ctx, others(nodes, victim))
	// A follower killed while it led the region log's JetStream stream
	// pauses writes until JetStream elects another (4 to 9 s, more on a
	// loaded machine): hence the wait.
	eventually(t, 30*time.Second, "writes without "+victim.name, func() bool { ack.mu.Lock(); defer ack.mu.Unlock(); return len(ack.values) > before+300 })
	stopLoad()
	wg.Wait()
	start(victim)
	eventually(t, 30*time.Second, victim.name+" caught up", func() bool { return len(missing(victim)) == 0 })

	ack.mu.Lock()
	defer ack.mu.Unlock()
	if len(ack.twice) > 0 {
		t.Fatalf("dots minted twice: %v", ack.twice)
	}
	t.Logf("%d writes acknowledged (%d distinct dots); refused: %v", len(ack.values), len(ack.dots), ack.errs)
}

func others(nodes []*haNode, not *haNode) []*haNode {
	var out []*haNode
	for _, n := range nodes {
		if n != not {
			out = append(out, n)
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
