package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/store"
)

var homeRule = rules.Spec{Name: "homed", Match: `key startsWith "h/"`, Strategy: "home_region", Home: `value.home ?? "r1"`}

func lwwDefault() rules.Spec { return rules.Spec{Name: "default", Match: "true", Strategy: "lww"} }

// TestHomeRegionNoConflicts: with links up and concurrent writers in every
// region, keys homed in one region never get a conflict.
func TestHomeRegionNoConflicts(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2", "r3"}, "all-to-all", []rules.Spec{homeRule, lwwDefault()})
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for _, n := range c.Nodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				key := fmt.Sprintf("h/%d", i%5)
				body := fmt.Sprintf(`{"home":"r2","from":%q,"i":%d}`, n.Config().Region, i)
				a, err := try("PUT", n.HTTPURL()+"/v1/kv/"+key, []byte(body))
				if err != nil || a.status != 200 {
					errs <- fmt.Sprintf("%s: %v %d %s", n.Config().Region, err, a.status, a.body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	waitConverged(t, c, 15*time.Second)
	for _, n := range c.Nodes() {
		for i := range 5 {
			m := do(t, "GET", fmt.Sprintf("%s/v1/kv/h/%d?meta=true", n.HTTPURL(), i), nil).json(t)
			if vs := m["versions"].([]any); len(vs) != 1 || vs[0].(map[string]any)["origin"] != "r2" {
				t.Fatalf("%s h/%d: %v", n.Config().Region, i, m)
			}
		}
		if cs, _ := n.Store().Conflicts("", 10); len(cs) != 0 {
			t.Fatalf("%s logged conflicts for homed keys: %+v", n.Config().Region, cs)
		}
		if n.Config().Region != "r2" && n.Store().Seq() != 0 {
			t.Fatalf("%s wrote %d homed versions itself", n.Config().Region, n.Store().Seq())
		}
	}
}

func TestHomeModesAndFallback(t *testing.T) {
	specs := []rules.Spec{
		{Name: "fwd", Match: `key startsWith "f/"`, Strategy: "home_region", Home: `"r2"`},
		{Name: "redir", Match: `key startsWith "d/"`, Strategy: "home_region", Home: `"r2"`, HomeMode: "redirect"},
		{Name: "rej", Match: `key startsWith "j/"`, Strategy: "home_region", Home: `"r2"`, HomeMode: "reject"},
		{Name: "soft", Match: `key startsWith "s/"`, Strategy: "home_region", Home: `"r2"`, Fallback: "lww"},
		{Name: "bad", Match: `key startsWith "b/"`, Strategy: "home_region", Home: `value.home`},
		lwwDefault(),
	}
	c := startCluster(t, []string{"r1", "r2", "r3"}, "all-to-all", specs)
	r1 := c.Node("r1").HTTPURL()

	a := do(t, "PUT", r1+"/v1/kv/f/1", []byte(`{"v":1}`))
	if a.status != 200 || a.header.Get(HeaderSession) == "" {
		t.Fatalf("forwarded write: %d %s", a.status, a.body)
	}
	// The write was made by r2: read-your-write at r1 with the session.
	g := do(t, "GET", r1+"/v1/kv/f/1?meta=true", nil, HeaderSession, a.header.Get(HeaderSession), HeaderWait, "5000")
	if g.status != 200 || g.json(t)["versions"].([]any)[0].(map[string]any)["origin"] != "r2" {
		t.Fatalf("forwarded write not made by r2: %d %s", g.status, g.body)
	}
	req := mustRequest(t, "PUT", r1+"/v1/kv/d/1", `{"v":1}`)
	resp, err := noRedirectClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 307 || !strings.HasPrefix(resp.Header.Get("Location"), c.Node("r2").HTTPURL()+"/v1/kv/d/1") {
		t.Fatalf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if a := do(t, "PUT", r1+"/v1/kv/j/1", []byte(`1`)); a.status != 421 || a.json(t)["home"] != "r2" {
		t.Fatalf("reject: %d %s", a.status, a.body)
	}
	if a := do(t, "PUT", r1+"/v1/kv/b/1", []byte(`{"home":"mars"}`)); a.status != 400 || a.json(t)["code"] != "bad_home" {
		t.Fatalf("bad home: %d %s", a.status, a.body)
	}
	// A home expression that fails at run time (no field to read) is a
	// 400 too, counted under the rule and the field home.
	if a := do(t, "PUT", r1+"/v1/kv/b/2", []byte(`["no","home"]`)); a.status != 400 || a.json(t)["code"] != "bad_home" {
		t.Fatalf("failing home: %d %s", a.status, a.body)
	}
	if n := metricLine(t, c.Node("r1"), `geogate_rule_errors_total{field="home",rule="bad"} `); n != "2" {
		t.Fatalf("geogate_rule_errors_total{field=home,rule=bad} = %q, want 2 (the unknown region and the failing expression)", n)
	}
	// Home down: reject by default (503), lww fallback writes locally.
	if err := c.Stop("r2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "r2 unreachable from r1", func() bool {
		a := do(t, "PUT", r1+"/v1/kv/f/2", []byte(`1`))
		return a.status == 503 && a.json(t)["code"] == "home_unreachable"
	})
	if a := do(t, "PUT", r1+"/v1/kv/s/1", []byte(`{"v":"fallback"}`)); a.status != 200 {
		t.Fatalf("lww fallback: %d %s", a.status, a.body)
	}
	m := do(t, "GET", r1+"/v1/kv/s/1?meta=true", nil).json(t)
	if m["versions"].([]any)[0].(map[string]any)["origin"] != "r1" {
		t.Fatalf("fallback write not local: %v", m)
	}
	if !strings.Contains(string(do(t, "GET", r1+"/metrics", nil).body), `geogate_home_fallbacks_total{fallback="lww",rule="soft"} 1`) {
		t.Fatal("fallback not counted")
	}
}

// TestCustomRulesConverge: select, merge (at the resolver only) and on_read
// give one answer in every region, in every topology.
func TestCustomRulesConverge(t *testing.T) {
	specs := []rules.Spec{
		{Name: "stock", Match: `key startsWith "stock/"`, Strategy: "custom", Select: `version.value.updated_at`},
		{Name: "cart", Match: `key startsWith "cart/"`, Strategy: "custom", Merge: `{"items": sort(union(map(siblings, #.items)))}`, Resolver: "r3"},
		{Name: "tags", Match: `key startsWith "tags/"`, Strategy: "siblings", OnRead: `{"tags": sort(union(map(siblings, #.tags)))}`},
		lwwDefault(),
	}
	for _, kind := range []string{"all-to-all", "star", "circular"} {
		t.Run(kind, func(t *testing.T) {
			c := startCluster(t, []string{"r1", "r2", "r3"}, kind, specs)
			pauseAll(t, c)
			for i, n := range c.Nodes() {
				url := n.HTTPURL() + "/v1/kv/"
				do(t, "PUT", url+"stock/x", []byte(fmt.Sprintf(`{"qty":%d,"updated_at":%d}`, i, 100-i*10)))
				do(t, "PUT", url+"cart/x", []byte(fmt.Sprintf(`{"items":["i%d","shared"]}`, i)))
				do(t, "PUT", url+"tags/x", []byte(fmt.Sprintf(`{"tags":["t%d"]}`, i)))
			}
			resumeAll(t, c)
			want := map[string]string{
				"stock/x": `{"qty":0,"updated_at":100}`,
				"cart/x":  `{"items":["i0","i1","i2","shared"]}`,
				"tags/x":  `{"tags":["t0","t1","t2"]}`,
			}
			for key, w := range want {
				for _, n := range c.Nodes() {
					eventually(t, 20*time.Second, key+" at "+n.Config().Region, func() bool {
						a := do(t, "GET", n.HTTPURL()+"/v1/kv/"+key, nil)
						return a.status == 200 && strings.TrimSpace(string(a.body)) == w
					})
				}
			}
			waitConverged(t, c, 20*time.Second)
			// The merge was written once, by the resolver, and the
			// merged-away versions are in its conflict log.
			m := do(t, "GET", c.Node("r1").HTTPURL()+"/v1/kv/cart/x?meta=true", nil).json(t)
			if vs := m["versions"].([]any); len(vs) != 1 || vs[0].(map[string]any)["origin"] != "r3" {
				t.Fatalf("cart after merge: %v", m)
			}
			// Merges run as versions arrive (maybe more than once); every
			// original version is in some merge's discarded list.
			cs, _ := c.Node("r3").Store().Conflicts("cart/x", 10)
			discarded := map[string]bool{}
			for _, e := range cs {
				if e.Note == "" || e.Rule != "cart" {
					t.Fatalf("unexpected conflict entry %+v", e)
				}
				for _, v := range e.Discarded {
					discarded[string(v.Value)] = true
				}
			}
			for i := range 3 {
				if v := fmt.Sprintf(`{"items":["i%d","shared"]}`, i); !discarded[v] {
					t.Fatalf("original version %s not in the merge log: %+v", v, cs)
				}
			}
			ss, _ := c.Node("r2").Store().Conflicts("stock/x", 10)
			if len(ss) == 0 {
				t.Fatal("select losers not logged")
			}
		})
	}
}

// TestSkewedClockLWW: r3's clock runs 30 s ahead. A causally later write at
// r1 still wins over r3's; truly concurrent writes pick one winner
// everywhere; the skew is flagged.
func TestSkewedClockLWW(t *testing.T) {
	skew := map[string]int64{"r3": 30_000}
	c := startCluster(t, []string{"r1", "r2", "r3"}, "all-to-all", nil, func(s *ClusterSpec) {
		s.Options = func(region string) Options {
			return Options{Logger: testLogger(), Clock: func() time.Time { return time.Now().Add(time.Duration(skew[region]) * time.Millisecond) }}
		}
	})
	r1, r3 := c.Node("r1"), c.Node("r3")
	do(t, "PUT", r3.HTTPURL()+"/v1/kv/k", []byte(`"from r3, fast clock"`))
	eventually(t, 10*time.Second, "r1 to see r3's write", func() bool {
		return do(t, "GET", r1.HTTPURL()+"/v1/kv/k", nil).status == 200
	})
	do(t, "PUT", r1.HTTPURL()+"/v1/kv/k", []byte(`"from r1, later"`))
	waitConverged(t, c, 10*time.Second)
	for _, n := range c.Nodes() {
		if a := do(t, "GET", n.HTTPURL()+"/v1/kv/k", nil); strings.TrimSpace(string(a.body)) != `"from r1, later"` {
			t.Fatalf("%s: causally later write lost to a fast clock: %s", n.Config().Region, a.body)
		}
	}
	if !strings.Contains(string(do(t, "GET", r1.HTTPURL()+"/metrics", nil).body), "geogate_clock_skew_flagged_total 1") {
		t.Fatal("skew not flagged")
	}
	// Concurrent writes: the same winner everywhere.
	pauseAll(t, c)
	for _, n := range c.Nodes() {
		do(t, "PUT", n.HTTPURL()+"/v1/kv/c", []byte(fmt.Sprintf(`%q`, n.Config().Region)))
	}
	resumeAll(t, c)
	waitConverged(t, c, 10*time.Second)
	var got []string
	for _, n := range c.Nodes() {
		got = append(got, strings.TrimSpace(string(do(t, "GET", n.HTTPURL()+"/v1/kv/c", nil).body)))
	}
	if got[0] != got[1] || got[1] != got[2] || got[0] != `"r3"` {
		t.Fatalf("concurrent winners %v; want r3 (its clock is ahead) everywhere", got)
	}
	var conflicts int
	for _, n := range c.Nodes() {
		cs, _ := n.Store().Conflicts("c", 10)
		conflicts += len(cs)
	}
	if conflicts == 0 {
		t.Fatal("lww losers not logged")
	}
}

// TestConflictsPublished: conflict-log entries are served at
// /v1/conflicts and published on geogate.conflicts.<region>.
func TestConflictsPublished(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", nil)
	r1, r2 := c.Node("r1"), c.Node("r2")
	nc, err := nats.Connect(r1.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("geogate.conflicts.r1")
	if err != nil {
		t.Fatal(err)
	}
	// Both directions paused: the two writes are truly concurrent.
	pause(t, r1, "r2")
	pause(t, r2, "r1")
	do(t, "PUT", r1.HTTPURL()+"/v1/kv/k", []byte(`"one"`))
	do(t, "PUT", r2.HTTPURL()+"/v1/kv/k", []byte(`"two"`))
	resume(t, r1, "r2")
	resume(t, r2, "r1")
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no conflict published: %v", err)
	}
	var e store.ConflictEntry
	if err := json.Unmarshal(msg.Data, &e); err != nil || e.Key != "k" || e.Rule != "default" || len(e.Discarded) != 1 || e.Kept == nil {
		t.Fatalf("published entry %s (%v)", msg.Data, err)
	}
	cs := do(t, "GET", r1.HTTPURL()+"/v1/conflicts?key=k", nil).json(t)["conflicts"].([]any)
	if len(cs) != 1 || cs[0].(map[string]any)["rule"] != "default" {
		t.Fatalf("GET /v1/conflicts: %v", cs)
	}
}
