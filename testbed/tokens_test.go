package testbed

import (
	"encoding/binary"
	"hash/fnv"
	"testing"

	"github.com/geogate/geogate/conflict"
)

// contextToken builds a context token as the gateway does (tokens.go).
func contextToken(key string, vv conflict.VV) string {
	h := fnv.New64a()
	h.Write([]byte(key))
	b := binary.BigEndian.AppendUint64([]byte{'c'}, h.Sum64())
	return conflict.EncodeToken(conflict.AppendVV(b, vv))
}

func sessionToken(vv conflict.VV) string {
	return conflict.EncodeToken(conflict.AppendVV([]byte{'s'}, vv))
}

func TestWriteDot(t *testing.T) {
	ctx := conflict.VV{"us-east~a1": 7, "eu-west~b2": 3}
	cases := []struct {
		name string
		ans  writeAnswer
		want conflict.Dot
		ok   bool
	}{
		{"from tokens", writeAnswer{Context: contextToken("k", ctx), Session: sessionToken(conflict.VV{"us-east~a1": 41})},
			conflict.Dot{Actor: "us-east~a1", Counter: 7}, true},
		{"dot field wins", writeAnswer{Dot: "eu-west~b2:3", Context: "garbage"}, conflict.Dot{Actor: "eu-west~b2", Counter: 3}, true},
		{"session of two actors", writeAnswer{Context: contextToken("k", ctx), Session: sessionToken(ctx)}, conflict.Dot{}, false},
		{"actor absent from context", writeAnswer{Context: contextToken("k", ctx), Session: sessionToken(conflict.VV{"ap-south~c": 1})}, conflict.Dot{}, false},
		{"swapped tokens", writeAnswer{Context: sessionToken(ctx), Session: contextToken("k", ctx)}, conflict.Dot{}, false},
		{"not base64", writeAnswer{Context: "!!", Session: "!!"}, conflict.Dot{}, false},
		{"bad dot field", writeAnswer{Dot: "nocounter"}, conflict.Dot{}, false},
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
