package testbed

import (
	"testing"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/conflict"
)

func TestWriteDot(t *testing.T) {
	cases := []struct {
		name string
		ans  client.WriteResult
		want conflict.Dot
		ok   bool
	}{
		{"dot field", client.WriteResult{Dot: "eu-west~b2:3"}, conflict.Dot{Actor: "eu-west~b2", Counter: 3}, true},
		{"no dot", client.WriteResult{Context: "c", Session: "s"}, conflict.Dot{}, false},
		{"bad dot field", client.WriteResult{Dot: "nocounter"}, conflict.Dot{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := writeDot(tc.ans)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("writeDot = %v, %v; want %v, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestParseDotRoundTrip(t *testing.T) {
	for _, d := range []conflict.Dot{{Actor: "us-east~x", Counter: 1}, {Actor: "a:b~c", Counter: 1 << 40}} {
		got, err := parseDot(d.String())
		if err != nil || got != d {
			t.Errorf("parseDot(%q) = %v, %v; want %v", d.String(), got, err, d)
		}
	}
	for _, bad := range []string{"", ":1", "a:0", "a:x", "a"} {
		if _, err := parseDot(bad); err == nil {
			t.Errorf("parseDot(%q) succeeded", bad)
		}
	}
}
