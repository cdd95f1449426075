package gateway

import (
	"testing"
	"time"
)

// TestStuckActorsJudgedEach: progress on one actor of a link does not hide
// another that stays stuck (a link carrying two origins, one of which the
// peer's stream no longer holds); an actor that moves starts over; one no
// longer behind is dropped.
func TestStuckActorsJudgedEach(t *testing.T) {
	var st reseedState
	t0 := time.Unix(1000, 0)
	for i := range 10 {
		now := t0.Add(time.Duration(i) * 5 * time.Second)
		st.track(map[string]uint64{"x~1": 5, "y~1": uint64(100 + i)}, now)
		if got := st.stuck["y~1"].since; !got.Equal(now) {
			t.Fatalf("check %d: y~1, which moved, stuck since %v, want %v", i, got, now)
		}
	}
	actor, since := st.oldest()
	if actor != "x~1" || !since.Equal(t0) {
		t.Fatalf("oldest stuck: %q since %v, want x~1 since %v", actor, since, t0)
	}
	later := t0.Add(time.Minute)
	st.track(map[string]uint64{"x~1": 6}, later)
	if actor, since := st.oldest(); actor != "x~1" || !since.Equal(later) {
		t.Fatalf("after x~1 moved: %q since %v, want x~1 since %v", actor, since, later)
	}
	if _, ok := st.stuck["y~1"]; ok {
		t.Fatal("y~1, no longer behind, is still tracked")
	}
	st.track(nil, later.Add(time.Second))
	if actor, _ := st.oldest(); actor != "" {
		t.Fatalf("nothing behind, yet %q is reported stuck", actor)
	}
}
