package topology

import "strings"

// MaxRegionLen is the longest region name New accepts. JetStream limits
// stream and consumer names to 255 bytes; with regions of at most 64 bytes,
// names built from one or two region names (StreamName, consumer names of
// the form prefix + from + to) stay well inside that limit.
const MaxRegionLen = 64

// StreamPrefix starts the name of every region's stream.
const StreamPrefix = "GEO_"

// SubjectPrefix is the first token of every replication subject.
const SubjectPrefix = "geo"

// ValidRegion reports whether name is a usable region name: 1 to
// MaxRegionLen bytes of [a-z0-9-]. Such a name is a valid NATS subject
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

// StreamName returns the name of region's JetStream stream: "GEO_" followed
// by the region name unchanged (GEO_us-east). NATS forbids whitespace, '.',
// '*', '>' and path separators in stream names but allows '-', so no
// mapping is needed; keeping the name as written keeps it readable in
// `nats stream ls` and one-to-one with the region. The region must satisfy
// ValidRegion (New checks every region of a Plan).
func StreamName(region string) string { return StreamPrefix + region }

// Subject returns the subject under which an event of origin region origin
// is stored in stream's stream: "geo.<stream>.<origin>". A region's own
// writes use Subject(r, r); an event it forwards keeps its origin.
func Subject(stream, origin string) string {
	return SubjectPrefix + "." + stream + "." + origin
}

// StreamSubjects returns the subject pattern a region's stream captures:
// "geo.<region>.*", every origin.
func StreamSubjects(region string) string { return SubjectPrefix + "." + region + ".*" }

// ParseSubject is the inverse of Subject: it splits "geo.<stream>.<origin>"
// and reports ok only when the subject has exactly that shape with two
// valid region names.
func ParseSubject(subject string) (stream, origin string, ok bool) {
	rest, found := strings.CutPrefix(subject, SubjectPrefix+".")
	if !found {
		return "", "", false
	}
	stream, origin, found = strings.Cut(rest, ".")
	if !found || !ValidRegion(stream) || !ValidRegion(origin) {
		return "", "", false
	}
	return stream, origin, true
}
