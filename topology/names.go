package topology

import "fmt"

// MaxRegionLen is the longest region name New accepts. JetStream limits
// stream and consumer names to 255 bytes; with regions of at most 64 bytes,
// names built from one or two region names (link.StreamName,
// link.ConsumerName) stay well inside that limit.
const MaxRegionLen = 64

// ValidRegion reports whether name is a usable region name: 1 to
// MaxRegionLen bytes of [a-z0-9-], not ReservedRegion. It is the one
// definition the config, the plan and the links use. Such a name is a valid NATS subject
// token and a valid part of a JetStream stream or consumer name (it has no
// whitespace, '.', '*', '>', '/' or '\').
func ValidRegion(name string) bool { return CheckRegion(name) == nil }

// CheckRegion returns nil when ValidRegion(name) holds, else an error
// saying why the name is refused and what a name must be, worded to follow
// the config key it concerns ("region name \"US\" must be ..."). New and
// Validate use the same words.
func CheckRegion(name string) error {
	if name == ReservedRegion {
		return fmt.Errorf("region name %q is reserved (heartbeat subjects); choose another", name)
	}
	ok := name != "" && len(name) <= MaxRegionLen
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("region name %q must be 1..%d characters of [a-z0-9-]", name, MaxRegionLen)
	}
	return nil
}

// ReservedRegion is the one name a region may not take: heartbeats travel
// on geo.hb.<region>, so a region "hb" would capture them in its stream.
const ReservedRegion = "hb"
