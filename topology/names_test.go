package topology

import (
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestNames(t *testing.T) {
	if got := StreamName("us-east"); got != "GEO_us-east" {
		t.Errorf("StreamName = %q", got)
	}
	if got := Subject("us-east", "eu-west"); got != "geo.us-east.eu-west" {
		t.Errorf("Subject = %q", got)
	}
	if got := StreamSubjects("us-east"); got != "geo.us-east.*" {
		t.Errorf("StreamSubjects = %q", got)
	}
	for _, bad := range []string{"", "geo", "geo.a", "geo.a.b.c", "nats.a.b", "geo..b", "geo.a.", "geo.A.b", "geo.a.*", "geo.a.>"} {
		if s, o, ok := ParseSubject(bad); ok {
			t.Errorf("ParseSubject(%q) = %q, %q, true", bad, s, o)
		}
	}
}

// TestNamesRoundTripAndNATSRules checks, for any valid region, that the
// names built from it obey NATS's rules (no whitespace, '.', '*', '>' or
// path separators in a stream name; one subject token per region) and
// that ParseSubject inverts Subject.
func TestNamesRoundTripAndNATSRules(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		stream := rapid.StringMatching(`[a-z0-9-]{1,64}`).Draw(t, "stream")
		origin := rapid.StringMatching(`[a-z0-9-]{1,64}`).Draw(t, "origin")
		if !ValidRegion(stream) || !ValidRegion(origin) {
			t.Fatalf("ValidRegion refuses %q or %q", stream, origin)
		}
		name := StreamName(stream)
		if strings.ContainsAny(name, " \t\r\n\f.*>/\\") || len(name) > 255 {
			t.Fatalf("stream name %q breaks NATS rules", name)
		}
		subj := Subject(stream, origin)
		if toks := strings.Split(subj, "."); len(toks) != 3 || toks[1] != stream || toks[2] != origin {
			t.Fatalf("subject %q has tokens %v", subj, toks)
		}
		s, o, ok := ParseSubject(subj)
		if !ok || s != stream || o != origin {
			t.Fatalf("ParseSubject(%q) = %q, %q, %v", subj, s, o, ok)
		}
	})
}

func TestValidRegion(t *testing.T) {
	for name, want := range map[string]bool{
		"us-east": true, "a": true, "0": true, "-": true, strings.Repeat("z", MaxRegionLen): true,
		"": false, "US": false, "us_east": false, "us.east": false, "us east": false, "é": false,
		strings.Repeat("z", MaxRegionLen+1): false, "a/b": false, "a>": false,
	} {
		if got := ValidRegion(name); got != want {
			t.Errorf("ValidRegion(%q) = %v, want %v", name, got, want)
		}
	}
}
