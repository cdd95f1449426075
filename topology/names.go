package topology

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
func ValidRegion(name string) bool {
	if name == "" || len(name) > MaxRegionLen || name == ReservedRegion {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// ReservedRegion is the one name a region may not take: heartbeats travel
// on geo.hb.<region>, so a region "hb" would capture them in its stream.
const ReservedRegion = "hb"
