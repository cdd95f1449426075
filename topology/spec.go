package topology

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Kind names a replication topology.
type Kind string

// The topologies a Plan can take (DESIGN section 4).
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

// ErrInvalidSpec is matched (errors.Is) by every error New returns.
var ErrInvalidSpec = errors.New("invalid topology")

// SpecError reports why New refused its input: the config key at fault
// (regions, topology.kind, topology.hub, topology.order) and the reason.
// It matches ErrInvalidSpec.
type SpecError struct {
	Field  string
	Reason string
}

// Error renders "field: reason".
func (e *SpecError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalidSpec) hold.
func (e *SpecError) Is(target error) bool { return target == ErrInvalidSpec }

func specErr(field, format string, args ...any) error {
	return &SpecError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// validate checks regions and spec and returns the ring order to use for
// Circular (a copy). It reports the first problem found, checking regions,
// then kind, then hub, then order.
func validate(regions []string, spec Spec) ([]string, error) {
	if len(regions) == 0 {
		return nil, specErr("regions", "at least one region is required")
	}
	seen := make(map[string]bool, len(regions))
	for i, r := range regions {
		if r == ReservedRegion {
			return nil, specErr("regions", "region %d name %q is reserved (heartbeat subjects); choose another", i, r)
		}
		if !ValidRegion(r) {
			return nil, specErr("regions", "region %d name %q must be 1..%d characters of [a-z0-9-]", i, r, MaxRegionLen)
		}
		if seen[r] {
			return nil, specErr("regions", "region %q is listed twice", r)
		}
		seen[r] = true
	}
	if !spec.Kind.Valid() {
		if spec.Kind == "" {
			return nil, specErr("topology.kind", "required (want %s)", kindList())
		}
		return nil, specErr("topology.kind", "%q is not a topology (want %s)", spec.Kind, kindList())
	}
	switch {
	case spec.Hub == "" && spec.Kind == Star:
		return nil, specErr("topology.hub", "required for a star topology")
	case spec.Hub != "" && !seen[spec.Hub]:
		return nil, specErr("topology.hub", "%q is not one of the regions", spec.Hub)
	}
	if len(spec.Order) == 0 {
		return slices.Clone(regions), nil
	}
	inOrder := make(map[string]bool, len(spec.Order))
	for _, r := range spec.Order {
		switch {
		case !seen[r]:
			return nil, specErr("topology.order", "%q is not one of the regions", r)
		case inOrder[r]:
			return nil, specErr("topology.order", "region %q is listed twice", r)
		}
		inOrder[r] = true
	}
	for _, r := range regions {
		if !inOrder[r] {
			return nil, specErr("topology.order", "region %q is missing (the order must list every region once)", r)
		}
	}
	return slices.Clone(spec.Order), nil
}
