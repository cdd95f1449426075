package gateway

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/rules"
)

// TestNoTokenLosesAWrite: whatever tokens clients send (none, ones the
// regions answered, ones for other keys, garbage, and contexts forged with
// the deployment's own key naming any actor at any counter, the 2^64-1 that
// made a dot wrap included), no acknowledged write disappears from the
// regions' frontiers unless a write acknowledged later supersedes it with
// a context that covered its dot. The key's rule keeps siblings, so a
// context is the only way anything is superseded; each iteration writes
// its own key at two regions and waits for them to converge.
func TestNoTokenLosesAWrite(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", []rules.Spec{{Name: "keep", Match: "true", Strategy: "siblings"}})
	nodes := []*Node{c.Node("r1"), c.Node("r2")}
	keys := nodes[0].tokens.current()
	iteration := 0
	rapid.Check(t, func(t *rapid.T) {
		iteration++
		key := fmt.Sprintf("prop/%d", iteration)
		type acked struct {
			dot conflict.Dot
			ctx conflict.VV // the context the write was made with, as sent
		}
		var writes []acked
		var answered []string // context tokens regions answered for key
		actors := []string{nodes[0].Store().Actor(), nodes[1].Store().Actor(), "r3~00000000"}
		genCounter := rapid.OneOf(rapid.Uint64Range(0, 6), rapid.Just(conflict.MaxCounter), rapid.Just(uint64(math.MaxUint64)))
		for step := range rapid.IntRange(1, 12).Draw(t, "steps") {
			n := nodes[rapid.IntRange(0, 1).Draw(t, fmt.Sprintf("region %d", step))]
			var token string
			switch rapid.IntRange(0, 4).Draw(t, fmt.Sprintf("token kind %d", step)) {
			case 1:
				if len(answered) > 0 {
					token = rapid.SampledFrom(answered).Draw(t, "answered")
				}
			case 2: // forged with the deployment's key
				vv := conflict.VV{}
				for _, a := range actors {
					if rapid.Bool().Draw(t, "names "+a) {
						vv[a] = genCounter.Draw(t, "counter of "+a)
					}
				}
				token = conflict.SignToken(conflict.TokenContext, keys.keys[0], key, vv)
			case 3: // a context of another key
				token = conflict.SignToken(conflict.TokenContext, keys.keys[0], key+"/other", conflict.VV{actors[0]: 1})
			case 4:
				token = rapid.StringMatching(`[A-Za-z0-9_-]{0,40}`).Draw(t, "garbage")
			}
			headers := []string{HeaderWait, "50"}
			if token != "" {
				headers = append(headers, HeaderContext, token)
			}
			a, err := try("PUT", n.HTTPURL()+"/v1/kv/"+key, []byte(fmt.Sprintf(`{"step":%d}`, step)), headers...)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case a.status == 200:
				var ans struct{ Dot, Context string }
				if err := json.Unmarshal(a.body, &ans); err != nil {
					t.Fatalf("write answer %s: %v", a.body, err)
				}
				dot, err := parseDotString(ans.Dot)
				if err != nil {
					t.Fatal(err)
				}
				var sent conflict.VV
				if token != "" {
					if sent, err = conflict.VerifyToken(conflict.TokenContext, keys.keys, key, token); err != nil {
						t.Fatalf("a write with a token that does not verify (%v) was accepted", err)
					}
				}
				if sent.Covers(dot) {
					t.Fatalf("write %s accepted with a context %s that covers its own dot", dot, sent)
				}
				writes = append(writes, acked{dot: dot, ctx: sent})
				answered = append(answered, ans.Context)
			case a.status >= 500 && a.status != 503:
				t.Fatalf("server error: %d %s", a.status, a.body)
			}
			if a.status == 503 && !strings.Contains(string(a.body), "stale_context") {
				t.Fatalf("unexpected 503: %s", a.body)
			}
		}
		// Converge, then judge every acknowledged write in both regions.
		deadline := time.Now().Add(10 * time.Second)
		for {
			r1, _, _ := nodes[0].Store().Get(key)
			r2, _, _ := nodes[1].Store().Get(key)
			if r1.Equal(r2) {
				for _, w := range writes {
					inFrontier := false
					for _, v := range r1.Versions {
						inFrontier = inFrontier || v.Dot == w.dot
					}
					covered := false
					for _, o := range writes {
						covered = covered || (o.dot != w.dot && o.ctx.Covers(w.dot))
					}
					if !inFrontier && !covered {
						t.Fatalf("acknowledged write %s vanished: frontier %v, no acknowledged context covered it", w.dot, r1.Versions)
					}
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("regions did not converge on %s: %v vs %v", key, r1, r2)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// parseDotString parses "actor:counter" (conflict.Dot.String).
func parseDotString(s string) (conflict.Dot, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return conflict.Dot{}, fmt.Errorf("dot %q", s)
	}
	var c uint64
	if _, err := fmt.Sscan(s[i+1:], &c); err != nil || c == 0 {
		return conflict.Dot{}, fmt.Errorf("dot %q", s)
	}
	return conflict.Dot{Actor: s[:i], Counter: c}, nil
}
