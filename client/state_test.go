package client

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/geogate/geogate/conflict"
)

// testKey signs the tokens these tests make, as a region would.
var testKey = func() conflict.TokenKey {
	k, err := conflict.NewTokenKey([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		panic(err)
	}
	return k
}()

func sessionToken(v conflict.VV) string {
	return conflict.SignToken(conflict.TokenSession, testKey, "", v)
}

func contextToken(key string, v conflict.VV) string {
	return conflict.SignToken(conflict.TokenContext, testKey, key, v)
}

// headerVV joins the vectors of every token a header lists.
func headerVV(kind byte, key, header string) (conflict.VV, error) {
	out := conflict.VV{}
	for _, tok := range conflict.SplitTokens(header) {
		vv, err := conflict.PeekToken(kind, key, tok)
		if err != nil {
			return nil, err
		}
		out = out.Merge(vv)
	}
	return out, nil
}

func genVV() *rapid.Generator[conflict.VV] {
	return rapid.Custom(func(t *rapid.T) conflict.VV {
		return rapid.MapOfN(rapid.SampledFrom([]string{"us~1", "eu~2", "ap~3"}), rapid.Uint64Range(1, 20), 0, 3).Draw(t, "vv")
	})
}

// TestSessionJoin: the session the client sends joins every token
// observed, whatever their order (as tokens it cannot join itself: the
// region joins them), and keeps no token another covers; a token given
// to one call joins in without being kept.
func TestSessionJoin(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		vvs := rapid.SliceOfN(genVV(), 1, 6).Draw(t, "answers")
		var s session
		want := conflict.VV{}
		for _, v := range vvs {
			s.observe(sessionToken(v))
			want = want.Merge(v)
		}
		got, err := headerVV(conflict.TokenSession, "", s.token(""))
		if err != nil || !got.Equal(want) {
			t.Fatalf("session %v (%v), want %v", got, err, want)
		}
		for i, a := range s.held.vvs {
			for j, b := range s.held.vvs {
				if i != j && a.Descends(b) {
					t.Fatalf("kept token %v covers kept token %v", a, b)
				}
			}
		}
		extra := genVV().Draw(t, "extra")
		withExtra, _ := headerVV(conflict.TokenSession, "", s.token(sessionToken(extra)))
		if !withExtra.Equal(want.Merge(extra)) {
			t.Fatalf("with a call's token %v: %v, want %v", extra, withExtra, want.Merge(extra))
		}
		if again, _ := headerVV(conflict.TokenSession, "", s.token("")); !again.Equal(want) {
			t.Fatal("a call's token was kept")
		}
	})
}

// TestContextsJoinAndBehind: a key's kept context joins the answers; an
// answer is behind when it misses part of it.
func TestContextsJoinAndBehind(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := newContexts(10)
		vvs := rapid.SliceOfN(genVV(), 1, 5).Draw(t, "answers")
		want := conflict.VV{}
		for _, v := range vvs {
			c.observe("k", contextToken("k", v))
			want = want.Merge(v)
		}
		tok, kept := c.get("k")
		if !kept.Equal(want) {
			t.Fatalf("kept %v, want %v", kept, want)
		}
		if vv, err := headerVV(conflict.TokenContext, "k", tok); err != nil || !vv.Equal(want) {
			t.Fatalf("kept token holds %v (%v), want %v", vv, err, want)
		}
		probe := genVV().Draw(t, "probe")
		if got, want := c.behind("k", contextToken("k", probe)), !probe.Descends(want); got != want {
			t.Fatalf("behind(%v) with %v kept = %v", probe, kept, got)
		}
		if c.behind("k", "") != (len(want) > 0) {
			t.Fatal("an answer without a record must be behind a kept context that names a version")
		}
		if c.behind("other", "") {
			t.Fatal("a key without a kept context is never behind")
		}
	})
}

func TestContextsEvictLeastRecent(t *testing.T) {
	c := newContexts(3)
	for i := range 4 {
		c.observe(fmt.Sprint(i), contextToken(fmt.Sprint(i), conflict.VV{"a~1": 1}))
		if i == 2 {
			c.get("0") // 0 is now more recent than 1
		}
	}
	for k, kept := range map[string]bool{"0": true, "1": false, "2": true, "3": true} {
		if tok, _ := c.get(k); (tok != "") != kept {
			t.Errorf("key %s kept=%v, want %v", k, tok != "", kept)
		}
	}
	c.forget("0")
	if tok, _ := c.get("0"); tok != "" {
		t.Error("forget kept the key")
	}
	// A token that does not parse is kept as is and never counts as behind.
	c.observe("x", "opaque")
	if tok, _ := c.get("x"); tok != "opaque" || c.behind("x", "") {
		t.Errorf("unparsed token: %q", tok)
	}
}
