package topology

import (
	"errors"
	"strings"
	"testing"
)

func TestNewRefusesBadSpecs(t *testing.T) {
	long := strings.Repeat("a", MaxRegionLen+1)
	tests := []struct {
		name    string
		regions []string
		spec    Spec
		field   string
		reason  string // in the message
	}{
		{"no regions", nil, Spec{Kind: AllToAll}, "regions", "at least one region"},
		{"empty region name", []string{"a", ""}, Spec{Kind: AllToAll}, "regions", `region 1 name ""`},
		{"upper case", []string{"US-east"}, Spec{Kind: AllToAll}, "regions", `"US-east" must be 1..64 characters of [a-z0-9-]`},
		{"dot in name", []string{"us.east"}, Spec{Kind: AllToAll}, "regions", `"us.east"`},
		{"wildcard in name", []string{"us*"}, Spec{Kind: AllToAll}, "regions", `"us*"`},
		{"underscore in name", []string{"us_east"}, Spec{Kind: AllToAll}, "regions", `"us_east"`},
		{"space in name", []string{"us east"}, Spec{Kind: AllToAll}, "regions", `"us east"`},
		{"name too long", []string{long}, Spec{Kind: AllToAll}, "regions", "1..64 characters"},
		{"duplicate region", []string{"a", "b", "a"}, Spec{Kind: AllToAll}, "regions", `"a" is listed twice`},
		{"no kind", []string{"a"}, Spec{}, "topology.kind", "required (want all-to-all | star | circular)"},
		{"unknown kind", []string{"a"}, Spec{Kind: "mesh"}, "topology.kind", `"mesh" is not a topology`},
		{"kind in capitals", []string{"a"}, Spec{Kind: "Star", Hub: "a"}, "topology.kind", `"Star" is not a topology`},
		{"star without hub", []string{"a", "b"}, Spec{Kind: Star}, "topology.hub", "required for a star"},
		{"star hub unknown", []string{"a", "b"}, Spec{Kind: Star, Hub: "c"}, "topology.hub", `"c" is not one of the regions`},
		{"stray hub unknown", []string{"a", "b"}, Spec{Kind: AllToAll, Hub: "c"}, "topology.hub", `"c" is not one of the regions`},
		{"order names a stranger", []string{"a", "b"}, Spec{Kind: Circular, Order: []string{"a", "b", "c"}}, "topology.order", `"c" is not one of the regions`},
		{"order repeats a region", []string{"a", "b"}, Spec{Kind: Circular, Order: []string{"a", "b", "a"}}, "topology.order", `"a" is listed twice`},
		{"order misses a region", []string{"a", "b", "c"}, Spec{Kind: Circular, Order: []string{"c", "a"}}, "topology.order", `"b" is missing`},
		{"stray order bad", []string{"a", "b"}, Spec{Kind: Star, Hub: "a", Order: []string{"a"}}, "topology.order", `"b" is missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.regions, tt.spec)
			if err == nil {
				t.Fatalf("New accepted it: %s", p)
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error %v does not match ErrInvalidSpec", err)
			}
			var se *SpecError
			if !errors.As(err, &se) || se.Field != tt.field {
				t.Errorf("error %v: want a *SpecError on field %s", err, tt.field)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tt.field+": ") || !strings.Contains(msg, tt.reason) {
				t.Errorf("message %q, want %q and %q", msg, tt.field+": ", tt.reason)
			}
		})
	}
}

func TestNewAcceptsStrayButValidFields(t *testing.T) {
	// The contract's example config sets hub and order under all-to-all.
	p, err := New(three, Spec{Kind: AllToAll, Hub: "us-east", Order: []string{"us-east", "eu-west", "ap-south"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Hub() != "" || p.Order() != nil || len(p.Links()) != 6 {
		t.Fatalf("stray fields changed the plan: %s", p)
	}
}

func TestParseKind(t *testing.T) {
	for _, k := range Kinds() {
		if got, err := ParseKind(string(k)); err != nil || got != k {
			t.Errorf("ParseKind(%q) = %q, %v", k, got, err)
		}
	}
	for _, s := range []string{"", "ring", "all_to_all", " star"} {
		if _, err := ParseKind(s); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "topology.kind") {
			t.Errorf("ParseKind(%q): err %v", s, err)
		}
	}
}
