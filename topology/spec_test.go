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
		{"empty region name", []string{"a", ""}, Spec{Kind: AllToAll}, "regions", `region name "" must be`},
		{"reserved name", []string{"a", ReservedRegion}, Spec{Kind: AllToAll}, "regions", `"hb" is reserved`},
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
		{"star without hub", []string{"a", "b"}, Spec{Kind: Star}, "topology.hub", "required for a star topology: the hub region, one of (a, b)"},
		{"star hub unknown", []string{"a", "b"}, Spec{Kind: Star, Hub: "c"}, "topology.hub", `"c" is not one of the regions (a, b)`},
		{"stray hub unknown", []string{"a", "b"}, Spec{Kind: AllToAll, Hub: "c"}, "topology.hub", `"c" is not one of the regions`},
		{"order names a stranger", []string{"a", "b"}, Spec{Kind: Circular, Order: []string{"a", "b", "c"}}, "topology.order", `"c" is not one of the regions`},
		{"order repeats a region", []string{"a", "b"}, Spec{Kind: Circular, Order: []string{"a", "b", "a"}}, "topology.order", `"a" is listed twice`},
		{"order misses a region", []string{"a", "b", "c"}, Spec{Kind: Circular, Order: []string{"c", "a"}}, "topology.order", `"b" is missing`},
		{"order misses two regions", []string{"a", "b", "c"}, Spec{Kind: Circular, Order: []string{"b"}}, "topology.order", `regions "a", "c" are missing`},
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
			// Validate agrees: it refuses too, and its first problem is New's.
			verr := Validate(tt.regions, tt.spec)
			var first *SpecError
			if !errors.Is(verr, ErrInvalidSpec) || !errors.As(verr, &first) || first.Error() != err.Error() {
				t.Errorf("Validate = %v; want its first problem to be New's %v", verr, err)
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

// TestValidateReportsEveryProblem: Validate lists each problem once, in the
// order regions, kind, hub, order, and names the offending region entry.
func TestValidateReportsEveryProblem(t *testing.T) {
	err := Validate([]string{"a", "B", "a", "c"}, Spec{Kind: "mesh", Hub: "x", Order: []string{"a", "B", "c"}})
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate = %v, want a joined list of problems", err)
	}
	type problem struct{ field, region, reason string }
	want := []problem{
		{"regions", "B", `region name "B" must be 1..64 characters of [a-z0-9-]`},
		{"regions", "a", `region "a" is listed twice`},
		{"topology.kind", "", `"mesh" is not a topology`},
		{"topology.hub", "", `"x" is not one of the regions (a, B, c)`},
	}
	errs := j.Unwrap()
	if len(errs) != len(want) {
		t.Fatalf("Validate reported %d problems, want %d:\n%v", len(errs), len(want), err)
	}
	for i, e := range errs {
		se, ok := e.(*SpecError)
		if !ok || se.Field != want[i].field || se.Region != want[i].region || !strings.Contains(se.Reason, want[i].reason) {
			t.Errorf("problem %d = %#v, want field %q region %q reason containing %q", i, e, want[i].field, want[i].region, want[i].reason)
		}
	}
	if err := Validate(three, Spec{Kind: Star, Hub: "eu-west", Order: []string{"ap-south", "us-east", "eu-west"}}); err != nil {
		t.Errorf("Validate refused a valid spec: %v", err)
	}
}

func TestCheckRegion(t *testing.T) {
	for _, name := range []string{"us-east", "a", strings.Repeat("z", MaxRegionLen)} {
		if err := CheckRegion(name); err != nil {
			t.Errorf("CheckRegion(%q) = %v", name, err)
		}
	}
	for name, reason := range map[string]string{
		"":                                  "must be 1..64 characters of [a-z0-9-]",
		"US":                                "must be 1..64 characters",
		strings.Repeat("z", MaxRegionLen+1): "must be 1..64 characters",
		ReservedRegion:                      "is reserved",
	} {
		if err := CheckRegion(name); err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("CheckRegion(%q) = %v, want an error containing %q", name, err, reason)
		}
	}
}
