package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/geogate/geogate/conflict"
	"pgregory.net/rapid"
)

func ver(origin string, counter uint64, hlc int64, value string) conflict.Version {
	return conflict.Version{Dot: conflict.Dot{Actor: origin, Counter: counter}, HLC: conflict.HLC{Wall: hlc},
		Origin: origin, Value: json.RawMessage(value)}
}

func tomb(origin string, counter uint64, hlc int64) conflict.Version {
	return conflict.Version{Dot: conflict.Dot{Actor: origin, Counter: counter}, HLC: conflict.HLC{Wall: hlc},
		Origin: origin, Deleted: true}
}

// canonJSON re-encodes a JSON value canonically (sorted keys, arrays as
// sets when unordered).
func canonJSON(t testing.TB, raw json.RawMessage, unordered bool) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("bad JSON %q: %v", raw, err)
	}
	if unordered {
		v = setForm(v)
	}
	return canonical(v)
}

func TestResolve(t *testing.T) {
	specs := []Spec{
		{Name: "lww", Match: `key startsWith "lww/"`, Strategy: "lww"},
		{Name: "home-reject", Match: `key startsWith "hr/"`, Strategy: "home_region", Home: `"us-east"`},
		{Name: "home-lww", Match: `key startsWith "hl/"`, Strategy: "home_region", Home: `"us-east"`, Fallback: "lww"},
		{Name: "home-sib", Match: `key startsWith "hs/"`, Strategy: "home_region", Home: `"us-east"`, Fallback: "siblings",
			OnRead: `{"n": sum(map(siblings, #.n))}`},
		{Name: "sib", Match: `key startsWith "sib/"`, Strategy: "siblings"},
		{Name: "cart", Match: `key startsWith "cart/"`, Strategy: "siblings", OnRead: `{"items": union(map(siblings, #.items))}`},
		{Name: "stock", Match: `key startsWith "stock/"`, Strategy: "custom", Select: `version.value.updated_at`},
		{Name: "del-wins", Match: `key startsWith "dw/"`, Strategy: "custom", Select: `version.deleted ? 1e18 : version.hlc`},
		{Name: "merge", Match: `key startsWith "m/"`, Strategy: "custom", Merge: `merge(siblings)`},
		{Name: "merge-read", Match: `key startsWith "mr/"`, Strategy: "custom", Merge: `merge(siblings)`, OnRead: `merge(siblings)`},
		{Name: "region-read", Match: `key startsWith "rr/"`, Strategy: "custom", OnRead: `{"at": region}`},
		{Name: "default", Match: `true`, Strategy: "lww"},
	}
	set := mustCompile(t, specs, Options{Regions: testRegions})
	a1 := ver("ap-south", 1, 300, `{"n": 1, "items": ["a"], "updated_at": 5}`)
	e1 := ver("eu-west", 1, 200, `{"n": 2, "items": ["b", "a"], "updated_at": 9}`)
	u1 := ver("us-east", 1, 100, `{"n": 4, "items": ["c"]}`)
	e2 := tomb("eu-west", 2, 400)
	tie := ver("us-east", 2, 300, `{"n": 8}`) // same HLC as a1: origin breaks the tie

	type want struct {
		outcome  Outcome
		value    string   // for 200 (compared as canonical JSON)
		siblings []string // for 300, in order
		kept     string   // dot of Kept, "" = nil
		lost     int      // len(Discarded)
	}
	tests := []struct {
		name, key string
		vs        []conflict.Version
		want      want
	}{
		{"lww empty", "lww/1", nil, want{outcome: OutcomeNone}},
		{"lww one", "lww/1", []conflict.Version{u1}, want{outcome: OutcomeOne, value: string(u1.Value)}},
		{"lww newest wins", "lww/1", []conflict.Version{u1, a1, e1}, want{outcome: OutcomeOne, value: string(a1.Value), kept: "ap-south:1", lost: 2}},
		{"lww hlc tie by origin", "lww/1", []conflict.Version{tie, a1}, want{outcome: OutcomeOne, value: string(tie.Value), kept: "us-east:2", lost: 1}},
		{"lww delete wins", "lww/1", []conflict.Version{a1, e2}, want{outcome: OutcomeNone, kept: "eu-west:2", lost: 1}},
		{"lww only a tombstone", "lww/1", []conflict.Version{e2}, want{outcome: OutcomeNone}},
		{"home reject resolves by lww", "hr/1", []conflict.Version{u1, e1}, want{outcome: OutcomeOne, value: string(e1.Value), kept: "eu-west:1", lost: 1}},
		{"home lww fallback", "hl/1", []conflict.Version{u1, e1}, want{outcome: OutcomeOne, value: string(e1.Value), kept: "eu-west:1", lost: 1}},
		{"home siblings fallback on_read", "hs/1", []conflict.Version{u1, e1, a1}, want{outcome: OutcomeOne, value: `{"n": 7}`}},
		{"siblings none live", "sib/1", []conflict.Version{e2}, want{outcome: OutcomeNone}},
		{"siblings one live", "sib/1", []conflict.Version{e2, u1}, want{outcome: OutcomeOne, value: string(u1.Value)}},
		{"siblings by dot", "sib/1", []conflict.Version{u1, e1, a1, e2},
			want{outcome: OutcomeSiblings, siblings: []string{string(a1.Value), string(e1.Value), string(u1.Value)}}},
		{"cart union", "cart/1", []conflict.Version{u1, e1, a1}, want{outcome: OutcomeOne, value: `{"items": ["a", "b", "c"]}`}},
		{"select highest score", "stock/1", []conflict.Version{a1, e1}, want{outcome: OutcomeOne, value: string(e1.Value), kept: "eu-west:1", lost: 1}},
		{"select missing field scores lowest", "stock/1", []conflict.Version{a1, u1}, want{outcome: OutcomeOne, value: string(a1.Value), kept: "ap-south:1", lost: 1}},
		{"select tombstone scores lowest", "stock/1", []conflict.Version{a1, e2}, want{outcome: OutcomeOne, value: string(a1.Value), kept: "ap-south:1", lost: 1}},
		{"select single version", "stock/1", []conflict.Version{u1}, want{outcome: OutcomeOne, value: string(u1.Value)}},
		{"select can keep a delete", "dw/1", []conflict.Version{a1, e2}, want{outcome: OutcomeNone, kept: "eu-west:2", lost: 1}},
		{"merge-only shows siblings", "m/1", []conflict.Version{u1, e1},
			want{outcome: OutcomeSiblings, siblings: []string{string(e1.Value), string(u1.Value)}}},
		{"merge with on_read", "mr/1", []conflict.Version{u1, e1}, want{outcome: OutcomeOne, value: `{"n": 4, "items": ["c"], "updated_at": 9}`}},
		{"on_read sees region", "rr/1", []conflict.Version{u1, e1}, want{outcome: OutcomeOne, value: `{"at": "ap-south"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := set.Match(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Resolve(tt.key, "ap-south", tt.vs)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if res.Outcome != tt.want.outcome {
				t.Fatalf("outcome %s, want %s (%+v)", res.Outcome, tt.want.outcome, res)
			}
			if tt.want.value != "" && canonJSON(t, res.Value, false) != canonJSON(t, json.RawMessage(tt.want.value), false) {
				t.Errorf("value %s, want %s", res.Value, tt.want.value)
			}
			if tt.want.outcome != OutcomeOne && res.Value != nil {
				t.Errorf("value %s set for outcome %s", res.Value, res.Outcome)
			}
			if len(res.Siblings) != len(tt.want.siblings) {
				t.Fatalf("siblings %q, want %q", res.Siblings, tt.want.siblings)
			}
			for i := range res.Siblings {
				if string(res.Siblings[i]) != tt.want.siblings[i] {
					t.Errorf("sibling %d = %s, want %s", i, res.Siblings[i], tt.want.siblings[i])
				}
			}
			gotKept := ""
			if res.Kept != nil {
				gotKept = res.Kept.Dot.String()
			}
			if gotKept != tt.want.kept || len(res.Discarded) != tt.want.lost {
				t.Errorf("kept %q discarded %d, want %q %d", gotKept, len(res.Discarded), tt.want.kept, tt.want.lost)
			}
		})
	}
}

func TestSelectScores(t *testing.T) {
	tests := []struct {
		name   string
		values []string // one version each, origins in order us-east, eu-west, ap-south
		winner int
		err    bool
	}{
		{"numbers", []string{`{"s": 3}`, `{"s": 10}`, `{"s": -1}`}, 1, false},
		{"strings rank lexically", []string{`{"s": "2024-05-02"}`, `{"s": "2024-05-10"}`, `{"s": "2024-04-30"}`}, 1, false},
		{"bools", []string{`{"s": true}`, `{"s": false}`, `{"s": false}`}, 0, false},
		{"ties fall back to lww", []string{`{"s": 1}`, `{"s": 1}`, `{"s": 0}`}, 1, false}, // eu-west has the higher HLC
		{"mixed numbers and strings", []string{`{"s": 1}`, `{"s": "a"}`, `{"s": 0}`}, 0, true},
		{"object score", []string{`{"s": {}}`, `{"s": 1}`, `{"s": 0}`}, 0, true},
	}
	set := mustCompile(t, []Spec{{Name: "s", Match: "true", Strategy: "custom", Select: "version.value.s"}}, Options{})
	r, _ := set.Match("k")
	origins := []string{"us-east", "eu-west", "ap-south"}
	hlcs := []int64{10, 30, 20}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vs []conflict.Version
			for i, v := range tt.values {
				vs = append(vs, ver(origins[i], 1, hlcs[i], v))
			}
			res, err := r.Resolve("k", "us-east", vs)
			if tt.err {
				if err == nil || res.Outcome != OutcomeSiblings || len(res.Siblings) != 3 {
					t.Fatalf("got %+v, %v; want 300 with all siblings and an error", res, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Kept == nil || res.Kept.Origin != origins[tt.winner] {
				t.Fatalf("kept %+v, want origin %s", res.Kept, origins[tt.winner])
			}
		})
	}
}

func TestMergeOnWrite(t *testing.T) {
	set := mustCompile(t, []Spec{
		{Name: "m", Match: `key startsWith "m/"`, Strategy: "custom", Merge: `merge(siblings, {"by": region, "count": len(versions)})`},
		{Name: "null", Match: `key startsWith "n/"`, Strategy: "custom", Merge: `nil`},
		{Name: "sib", Match: `true`, Strategy: "siblings"},
	}, Options{Regions: testRegions})
	m, _ := set.Match("m/1")
	vs := []conflict.Version{ver("us-east", 1, 1, `{"a": 1}`), ver("eu-west", 1, 2, `{"b": 2}`), tomb("ap-south", 1, 3)}
	got, ok, err := m.MergeOnWrite("m/1", "eu-west", vs)
	if err != nil || !ok {
		t.Fatalf("MergeOnWrite = %s, %v, %v", got, ok, err)
	}
	if want := `{"a":1,"b":2,"by":"eu-west","count":3}`; string(got) != want {
		t.Errorf("merged %s, want %s", got, want)
	}
	if !m.HasMerge() {
		t.Error("HasMerge false for a merge rule")
	}
	if _, ok, err := m.MergeOnWrite("m/1", "eu-west", vs[:1]); ok || err != nil {
		t.Errorf("one live version merged: %v %v", ok, err)
	}
	if _, ok, err := m.MergeOnWrite("m/1", "eu-west", []conflict.Version{vs[0], vs[2]}); ok || err != nil {
		t.Errorf("one live version and a tombstone merged: %v %v", ok, err)
	}
	sib, _ := set.Match("x")
	if _, ok, err := sib.MergeOnWrite("x", "eu-west", vs); ok || err != nil || sib.HasMerge() {
		t.Errorf("rule without merge merged: %v %v", ok, err)
	}
	null, _ := set.Match("n/1")
	if _, ok, err := null.MergeOnWrite("n/1", "eu-west", vs); ok || !errors.Is(err, ErrEval) {
		t.Errorf("null merge: ok %v err %v; want an ErrEval", ok, err)
	}
}

// TestRuntimeFailureKeepsVersions covers every way an evaluation can fail.
func TestRuntimeFailureKeepsVersions(t *testing.T) {
	vs := []conflict.Version{
		ver("us-east", 1, 1, `{"items": ["a"], "n": 1}`),
		ver("eu-west", 1, 2, `{"items": ["b"], "n": "x"}`),
		tomb("ap-south", 1, 3),
	}
	tests := []struct {
		name string
		spec Spec
		opts Options
		want error
	}{
		{"index out of range", Spec{Strategy: "siblings", OnRead: `siblings[5]`}, Options{}, ErrEval},
		{"type error", Spec{Strategy: "siblings", OnRead: `{"n": sum(map(siblings, #.n))}`}, Options{}, ErrEval},
		{"select on a bad field", Spec{Strategy: "custom", Select: `version.value.n + 1`}, Options{}, ErrEval},
		{"not JSON", Spec{Strategy: "custom", OnRead: `{"f": toJSON}`}, Options{}, ErrEval},
		{"null on_read", Spec{Strategy: "custom", OnRead: `nil`}, Options{}, ErrEval},
		{"memory budget", Spec{Strategy: "custom", OnRead: `map(1..100000, #)`}, Options{MemoryBudget: 1000}, ErrEval},
		{"input too large", Spec{Strategy: "custom", OnRead: `siblings`}, Options{MaxInputBytes: 10}, ErrTooLarge},
		{"result too large", Spec{Strategy: "custom", OnRead: `repeat("x", 1000)`}, Options{MaxResultBytes: 100}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Name, tt.spec.Match = "r", "true"
			set := mustCompile(t, []Spec{tt.spec}, tt.opts)
			r, _ := set.Match("k")
			res, err := r.Resolve("k", "us-east", vs)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if res.Outcome != OutcomeSiblings || len(res.Siblings) != 2 ||
				string(res.Siblings[0]) != string(vs[1].Value) || string(res.Siblings[1]) != string(vs[0].Value) {
				t.Fatalf("got %+v, want 300 with both live values in dot order", res)
			}
			res, err = r.Resolve("k", "us-east", vs[:1])
			if err != nil || res.Outcome != OutcomeOne {
				t.Errorf("a single version: %+v, %v; want 200 without evaluating", res, err)
			}
		})
	}
}

// genVersions draws a frontier of distinct dots with small HLCs (ties
// happen) and values with an optional score.
func genVersions(t *rapid.T) []conflict.Version {
	n := rapid.IntRange(1, 6).Draw(t, "n")
	counters := map[string]uint64{}
	var vs []conflict.Version
	for i := range n {
		origin := rapid.SampledFrom(testRegions).Draw(t, fmt.Sprintf("origin%d", i))
		counters[origin]++
		hlc := rapid.Int64Range(1, 4).Draw(t, fmt.Sprintf("hlc%d", i))
		if rapid.IntRange(0, 4).Draw(t, fmt.Sprintf("deleted%d", i)) == 0 {
			vs = append(vs, tomb(origin, counters[origin], hlc))
			continue
		}
		doc := map[string]any{"id": i}
		if s := rapid.IntRange(-1, 3).Draw(t, fmt.Sprintf("score%d", i)); s >= 0 {
			doc["s"] = s
		}
		b, _ := json.Marshal(doc)
		vs = append(vs, ver(origin, counters[origin], hlc, string(b)))
	}
	return vs
}

func resolutionKey(res Resolution) string {
	kept := ""
	if res.Kept != nil {
		kept = res.Kept.Dot.String()
	}
	var lost []string
	for _, d := range res.Discarded {
		lost = append(lost, d.Dot.String())
	}
	slices.Sort(lost)
	return fmt.Sprintf("%s|%s|%q|%s|%v", res.Outcome, res.Value, res.Siblings, kept, lost)
}

// Collapsing strategies give one answer for every order of the frontier,
// and that answer is the maximum of the strategy's order.
func TestPropCollapseOrderIndependent(t *testing.T) {
	set := mustCompile(t, []Spec{
		{Name: "sel", Match: `key startsWith "s/"`, Strategy: "custom", Select: `version.value.s`},
		{Name: "lww", Match: `true`, Strategy: "lww"},
	}, Options{Regions: testRegions})
	rapid.Check(t, func(t *rapid.T) {
		vs := genVersions(t)
		key := rapid.SampledFrom([]string{"s/1", "l/1"}).Draw(t, "key")
		r, _ := set.Match(key)
		want, err := r.Resolve(key, "us-east", vs)
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		perm := rapid.Permutation(vs).Draw(t, "perm")
		got, err := r.Resolve(key, "eu-west", perm)
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if resolutionKey(got) != resolutionKey(want) {
			t.Fatalf("order changed the result:\n%s\n%s", resolutionKey(want), resolutionKey(got))
		}
		// The winner beats every other version under the strategy's order.
		if len(vs) > 1 {
			if got.Kept == nil || len(got.Discarded) != len(vs)-1 {
				t.Fatalf("collapse of %d versions kept %v and discarded %d", len(vs), got.Kept, len(got.Discarded))
			}
			score := func(v conflict.Version) float64 {
				var doc struct{ S *float64 }
				if v.Deleted || json.Unmarshal(v.Value, &doc) != nil || doc.S == nil {
					return -1e308
				}
				return *doc.S
			}
			for _, l := range got.Discarded {
				var c int
				if key == "s/1" {
					c = conflict.CompareScored(conflict.Scored{Version: *got.Kept, Score: score(*got.Kept)}, conflict.Scored{Version: l, Score: score(l)})
				} else {
					c = conflict.CompareLWW(*got.Kept, l)
				}
				if c <= 0 {
					t.Fatalf("kept %v does not beat %v", got.Kept.Dot, l.Dot)
				}
			}
		}
	})
}

// A rule whose expression fails never drops a version.
func TestPropFailureKeepsEveryLiveVersion(t *testing.T) {
	set := mustCompile(t, []Spec{
		{Name: "read", Match: `key startsWith "r/"`, Strategy: "siblings", OnRead: `siblings[len(siblings)]`},
		{Name: "sel", Match: `key startsWith "s/"`, Strategy: "custom", Select: `version.value.id.nested`},
		{Name: "merge", Match: `true`, Strategy: "custom", Merge: `siblings[len(siblings)]`, OnRead: `1 % (len(key) - len(key))`},
	}, Options{})
	rapid.Check(t, func(t *rapid.T) {
		vs := genVersions(t)
		key := rapid.SampledFrom([]string{"r/1", "s/1", "m/1"}).Draw(t, "key")
		r, _ := set.Match(key)
		res, err := r.Resolve(key, "us-east", vs)
		var live []string
		sorted := slices.Clone(vs)
		slices.SortFunc(sorted, func(a, b conflict.Version) int { return a.Dot.Compare(b.Dot) })
		for _, v := range sorted {
			if !v.Deleted {
				live = append(live, string(v.Value))
			}
		}
		evaluated := len(live) > 1 || (key == "s/1" && len(vs) > 1 && len(live) > 0)
		if evaluated && !errors.Is(err, ErrEval) {
			t.Fatalf("failing expression returned no error (res %+v)", res)
		}
		switch len(live) {
		case 0:
			if res.Outcome != OutcomeNone {
				t.Fatalf("no live version: outcome %s", res.Outcome)
			}
		case 1:
			if res.Outcome != OutcomeOne || string(res.Value) != live[0] {
				t.Fatalf("one live version: %+v", res)
			}
		default:
			var got []string
			for _, s := range res.Siblings {
				got = append(got, string(s))
			}
			if res.Outcome != OutcomeSiblings || !slices.Equal(got, live) {
				t.Fatalf("got %s %v, want siblings %v", res.Outcome, got, live)
			}
		}
		if key == "m/1" {
			if _, ok, err := r.MergeOnWrite(key, "us-east", vs); ok || (len(live) > 1) != (err != nil) {
				t.Fatalf("failing merge: ok %v err %v with %d live", ok, err, len(live))
			}
		}
	})
}

// A Set is shared by every request goroutine of the gateway: concurrent
// evaluations must give the serial answers (run with -race).
func TestConcurrentUse(t *testing.T) {
	set := mustCompile(t, designSpecs(), Options{Regions: testRegions})
	vs := []conflict.Version{
		ver("us-east", 1, 1, `{"items": ["a"], "updated_at": 3}`),
		ver("eu-west", 1, 2, `{"items": ["b"], "updated_at": 1}`),
	}
	keys := []string{"cart/1", "stock/1", "user/1", "x"}
	want := map[string]string{}
	for _, k := range keys {
		r, _ := set.Match(k)
		res, err := r.Resolve(k, "us-east", vs)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = resolutionKey(res)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				k := keys[(g+i)%len(keys)]
				r, err := set.Match(k)
				if err != nil {
					errs <- err.Error()
					return
				}
				res, err := r.Resolve(k, "us-east", vs)
				if err != nil || resolutionKey(res) != want[k] {
					errs <- fmt.Sprintf("%s: %s, %v", k, resolutionKey(res), err)
					return
				}
				if k == "user/1" {
					if h, err := r.Home(k, json.RawMessage(`{"region": "eu-west"}`)); err != nil || h != "eu-west" {
						errs <- fmt.Sprintf("home %q %v", h, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
