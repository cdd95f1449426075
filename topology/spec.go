package topology

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Kind names a replication topology.
type Kind string

// The topologies a Plan can take.
const (
	// AllToAll: every region pulls from every other region; nobody
	// forwards. One hop everywhere, n*(n-1) links.
	AllToAll Kind = "all-to-all"
	// Star: spokes pull from the hub only; the hub pulls from every spoke
	// and forwards each spoke's events to the other spokes. Two hops
	// between spokes, 2*(n-1) links.
	Star Kind = "star"
	// Circular: regions form a ring in Spec.Order; each pulls from its
	// predecessor and forwards every event whose origin is not its
	// successor. An event makes n-1 hops, n links.
	Circular Kind = "circular"
)

// Kinds returns every valid Kind, in documentation order.
func Kinds() []Kind { return []Kind{AllToAll, Star, Circular} }

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool { return slices.Contains(Kinds(), k) }

// ParseKind converts a config or flag value to a Kind, refusing anything
// that is not exactly one of Kinds.
func ParseKind(s string) (Kind, error) {
	if k := Kind(s); k.Valid() {
		return k, nil
	}
	return "", &SpecError{Field: "topology.kind", Reason: fmt.Sprintf("%q is not a topology (want %s)", s, kindList())}
}

func kindList() string {
	names := make([]string, 0, len(Kinds()))
	for _, k := range Kinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, " | ")
}

// Spec is the config's topology section. The struct tags are the config
// keys.
type Spec struct {
	// Kind is the topology; required.
	Kind Kind `koanf:"kind" yaml:"kind" json:"kind"`
	// Hub is the star's centre; required for Star. Other kinds ignore it,
	// but when set it must still name a region (a typo is refused whatever
	// the kind, so switching kinds back is safe).
	Hub string `koanf:"hub" yaml:"hub,omitempty" json:"hub,omitempty"`
	// Order is the ring for Circular, r0 -> r1 -> ... -> r0; empty means the
	// regions in the order given to New. Other kinds ignore it, but when set
	// it must still be a permutation of the regions.
	Order []string `koanf:"order" yaml:"order,omitempty" json:"order,omitempty"`
}

// ErrInvalidSpec is matched (errors.Is) by every error New and Validate
// return.
var ErrInvalidSpec = errors.New("invalid topology")

// SpecError reports why New refused its input: the config key at fault
// (regions, topology.kind, topology.hub, topology.order), the region name at
// fault when the problem is one region of the list (Region, for field
// regions), and the reason, worded for an operator. It matches
// ErrInvalidSpec.
type SpecError struct {
	// Field is the config key: "regions", "topology.kind", "topology.hub"
	// or "topology.order".
	Field string
	// Region is the offending entry of the regions list, as given, when
	// Field is "regions" and one entry is at fault (a bad or repeated
	// name); "" otherwise.
	Region string
	// Reason says what is wrong and what is accepted instead.
	Reason string
}

// Error renders "field: reason".
func (e *SpecError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalidSpec) hold.
func (e *SpecError) Is(target error) bool { return target == ErrInvalidSpec }

// Validate checks regions and spec exactly as New does and returns every
// problem found, one *SpecError each, joined with errors.Join (errors.As
// finds the first, which is the one New reports), or nil when New would
// accept them. Problems come in the order regions, topology.kind,
// topology.hub, topology.order; a hub or order entry is checked against
// every name given in regions, valid or not, so one bad region name is
// reported once, under regions. It is pure: the config calls it to refuse
// a deployment before anything starts.
func Validate(regions []string, spec Spec) error {
	errs := problems(regions, spec)
	if len(errs) == 0 {
		return nil
	}
	joined := make([]error, len(errs))
	for i, e := range errs {
		joined[i] = e
	}
	return errors.Join(joined...)
}

// validate returns the ring order to use for Circular (a copy), or the
// first problem Validate would report.
func validate(regions []string, spec Spec) ([]string, error) {
	if errs := problems(regions, spec); len(errs) > 0 {
		return nil, errs[0]
	}
	if len(spec.Order) == 0 {
		return slices.Clone(regions), nil
	}
	return slices.Clone(spec.Order), nil
}

// problems lists every reason New refuses regions and spec, in the order
// regions, kind, hub, order.
func problems(regions []string, spec Spec) []*SpecError {
	var errs []*SpecError
	add := func(field, region, format string, args ...any) {
		errs = append(errs, &SpecError{Field: field, Region: region, Reason: fmt.Sprintf(format, args...)})
	}
	if len(regions) == 0 {
		add("regions", "", "at least one region is required")
	}
	seen := make(map[string]bool, len(regions))
	var names []string
	for _, r := range regions {
		switch err := CheckRegion(r); {
		case seen[r]:
			add("regions", r, "region %q is listed twice", r)
			continue
		case err != nil:
			add("regions", r, "%v", err)
		}
		seen[r] = true
		names = append(names, r)
	}
	known := "(" + strings.Join(names, ", ") + ")"
	switch {
	case spec.Kind == "":
		add("topology.kind", "", "required (want %s)", kindList())
	case !spec.Kind.Valid():
		add("topology.kind", "", "%q is not a topology (want %s)", spec.Kind, kindList())
	}
	switch {
	case spec.Hub == "" && spec.Kind == Star:
		add("topology.hub", "", "required for a star topology: the hub region, one of %s", known)
	case spec.Hub != "" && !seen[spec.Hub]:
		add("topology.hub", "", "%q is not one of the regions %s", spec.Hub, known)
	}
	if len(spec.Order) == 0 {
		return errs
	}
	inOrder := make(map[string]bool, len(spec.Order))
	for _, r := range spec.Order {
		switch {
		case !seen[r]:
			add("topology.order", "", "%q is not one of the regions %s", r, known)
			return errs
		case inOrder[r]:
			add("topology.order", "", "region %q is listed twice (the order must list every region once)", r)
			return errs
		}
		inOrder[r] = true
	}
	var missing []string
	for _, r := range names {
		if !inOrder[r] {
			missing = append(missing, strconv.Quote(r))
		}
	}
	switch len(missing) {
	case 0:
	case 1:
		add("topology.order", "", "region %s is missing (the order must list every region once)", missing[0])
	default:
		add("topology.order", "", "regions %s are missing (the order must list every region once)", strings.Join(missing, ", "))
	}
	return errs
}
