package link

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/geogate/geogate/topology"
)

// Wire format. One stream per region; one subject per (stream, origin region);
// every message carries its identity and route in headers, and its payload as
// opaque bytes.
const (
	// StreamPrefix starts every region's stream name: GEO_<region>.
	StreamPrefix = "GEO_"
	// SubjectPrefix is the first token of every replication subject.
	SubjectPrefix = "geo"
	// HeartbeatToken is the second token of heartbeat subjects
	// (geo.hb.<region>); for that reason no region may be named "hb"
	// (topology.ReservedRegion).
	HeartbeatToken = topology.ReservedRegion

	// HeaderMsgID is JetStream's deduplication header, set to MsgID(origin, oseq).
	HeaderMsgID = jetstream.MsgIDHeader
	// HeaderPath lists, comma-separated, the regions the event has visited;
	// the region of the stream holding the message is last.
	HeaderPath = "Geo-Path"
	// HeaderSeq carries the message's position in the publishing region's
	// outbox (OutboxEntry.Seq), in decimal.
	HeaderSeq = "Geo-Seq"
	// HeaderAcked and HeaderAckedSeq carry, in decimal, the end A of the
	// outbox prefix the publisher knew the stream had acknowledged when it
	// sent the message, and the highest stream sequence S holding an entry
	// of that prefix (both 0 when nothing verifiable was acknowledged).
	// Only the publisher reads them back: a ModeOutbox publisher that
	// restarts or finds the stream behind resumes after A if the message
	// now at S is still one of those entries (then, a lost tail being a
	// suffix, the stream holds the whole prefix; see
	// Publisher.resynchronise).
	HeaderAcked    = "Geo-Acked"
	HeaderAckedSeq = "Geo-Acked-Seq"
)

// ErrInvalidRegion reports a region name topology.ValidRegion refuses.
var ErrInvalidRegion = errors.New("invalid region name")

// ValidateRegion returns nil when name can be used as a region
// (topology.ValidRegion: a region "hb" would make its stream's subjects
// geo.hb.* capture every heartbeat).
func ValidateRegion(name string) error {
	if !topology.ValidRegion(name) {
		return fmt.Errorf("%w: %q", ErrInvalidRegion, name)
	}
	return nil
}

// sanitizeName maps s to a valid JetStream stream or consumer name component:
// every byte outside [A-Za-z0-9_-] ('.', '*', '>', whitespace, path
// separators, non-ASCII) becomes '_'. '-' is kept, so a valid region name is
// returned unchanged and names stay readable in `nats stream ls`.
func sanitizeName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// StreamName returns the name of region's stream, GEO_<region>. A valid
// region name is used as written ('-' is legal in stream names); any byte
// a stream name cannot hold is replaced by '_', so the result is always a
// legal name, though only valid regions map one-to-one.
func StreamName(region string) string { return StreamPrefix + sanitizeName(region) }

// ConsumerName returns the durable consumer name region uses to pull peer's
// stream: geo_from_<peer>_to_<region>. Region names contain no '_', so the
// name is unambiguous for valid regions.
func ConsumerName(peer, region string) string {
	return "geo_from_" + sanitizeName(peer) + "_to_" + sanitizeName(region)
}

// ConsumerTarget is the inverse of ConsumerName for peer's stream: the
// region a consumer named name feeds, and whether name is such a consumer.
// Region names hold no '_' (config validation), so the split is unique.
func ConsumerTarget(peer, name string) (string, bool) {
	to, ok := strings.CutPrefix(name, ConsumerName(peer, ""))
	if !ok || to == "" || strings.Contains(to, "_") {
		return "", false
	}
	return to, true
}

// Subject returns the subject of an event of originRegion stored in the
// stream of region stream: geo.<stream>.<originRegion>.
func Subject(stream, originRegion string) string {
	return SubjectPrefix + "." + stream + "." + originRegion
}

// StreamSubjects returns the subject filter of region's stream,
// geo.<region>.* (one token per origin region).
func StreamSubjects(region string) string { return SubjectPrefix + "." + region + ".*" }

// HeartbeatSubject returns the core NATS subject region's publisher sends
// its heartbeats on: geo.hb.<region>. It is outside every stream.
func HeartbeatSubject(region string) string {
	return SubjectPrefix + "." + HeartbeatToken + "." + region
}

// MsgID returns the deduplication ID of an event: "<originActor>:<oseq>".
// It names the event itself, not its copy, so the same event published twice
// into one stream (a republish after a crash) is stored once within the
// stream's duplicate window.
func MsgID(origin string, oseq uint64) string {
	return origin + ":" + strconv.FormatUint(oseq, 10)
}

// Heartbeat is the JSON document a publisher sends every heartbeat interval
// on HeartbeatSubject(Region). StreamSeq is the highest stream sequence
// confirmed by a publish ack before the heartbeat was sent (so every message
// up to it is in the stream); Published is the end of the outbox prefix the
// stream has acknowledged (PublisherStats.Acked: in ModeStream the trimmed
// position once the trim is done, in ModeOutbox possibly ahead of it);
// At is the publisher's clock in Unix milliseconds. BehindMs is how long
// the oldest outbox entry the publisher read and the stream has not yet
// acknowledged has been waiting (PublisherStats.Behind; 0 when none): a
// publisher stuck behind an entry keeps the stream, and so StreamSeq, from
// moving, and a link adds BehindMs to its lag so that its region does not
// read caught-up while the origin's log is stuck.
type Heartbeat struct {
	Region    string `json:"region"`
	StreamSeq uint64 `json:"stream_seq"`
	Published uint64 `json:"published"`
	At        int64  `json:"at"`
	BehindMs  int64  `json:"behind_ms,omitempty"`
}

// ackedPrefix is the end of the outbox prefix a stream has acknowledged:
// every entry up to seq is stored, at stream sequences up to stream.
type ackedPrefix struct{ seq, stream uint64 }

// encodeMsg builds the message for e in region's stream; acked is the
// prefix the stream has acknowledged so far (HeaderAcked, HeaderAckedSeq).
// The path is e.Path with region appended unless it is already last.
func encodeMsg(region string, e OutboxEntry, acked ackedPrefix) *nats.Msg {
	path := e.Path
	if len(path) == 0 || path[len(path)-1] != region {
		path = append(path[:len(path):len(path)], region)
	}
	h := make(nats.Header, 5)
	h[HeaderMsgID] = []string{MsgID(e.Origin, e.OSeq)}
	h[HeaderPath] = []string{strings.Join(path, ",")}
	h[HeaderSeq] = []string{strconv.FormatUint(e.Seq, 10)}
	h[HeaderAcked] = []string{strconv.FormatUint(acked.seq, 10)}
	h[HeaderAckedSeq] = []string{strconv.FormatUint(acked.stream, 10)}
	return &nats.Msg{Subject: Subject(region, e.OriginRegion), Header: h, Data: e.Data}
}

// resumeMark is what a stream message says about the publisher's outbox:
// it is entry seq (whose event has message ID id), sent when the prefix
// acked was acknowledged.
type resumeMark struct {
	seq   uint64
	id    string
	acked ackedPrefix
}

// decodeResume reads HeaderSeq, HeaderAcked, HeaderAckedSeq and
// HeaderMsgID; ok is false for a message without them (written before they
// existed) or with inconsistent values.
func decodeResume(h nats.Header) (m resumeMark, ok bool) {
	seq, err1 := strconv.ParseUint(h.Get(HeaderSeq), 10, 64)
	acked, err2 := strconv.ParseUint(h.Get(HeaderAcked), 10, 64)
	ackedSeq, err3 := strconv.ParseUint(h.Get(HeaderAckedSeq), 10, 64)
	id := h.Get(HeaderMsgID)
	if err1 != nil || err2 != nil || err3 != nil || seq == 0 || acked >= seq || (acked > 0) != (ackedSeq > 0) || id == "" {
		return resumeMark{}, false
	}
	return resumeMark{seq: seq, id: id, acked: ackedPrefix{seq: acked, stream: ackedSeq}}, true
}

// decodeMsg reads the replication fields of a message of stream's stream.
// StreamSeq is left to the caller (it comes from the delivery metadata).
func decodeMsg(stream, subject string, h nats.Header, data []byte) (Message, error) {
	m := Message{Stream: stream, Data: data}
	prefix := SubjectPrefix + "." + stream + "."
	origin, ok := strings.CutPrefix(subject, prefix)
	if !ok || origin == "" || strings.Contains(origin, ".") {
		return m, fmt.Errorf("decode: subject %q is not in stream %s", subject, stream)
	}
	m.OriginRegion = origin
	// The message ID is <origin actor>:<oseq> (MsgID); actors hold no ':'.
	id := h.Get(HeaderMsgID)
	i := strings.LastIndexByte(id, ':')
	if i <= 0 {
		return m, fmt.Errorf("decode: bad %s header %q", HeaderMsgID, id)
	}
	oseq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || oseq == 0 {
		return m, fmt.Errorf("decode: bad %s header %q", HeaderMsgID, id)
	}
	m.Origin, m.OSeq = id[:i], oseq
	if p := h.Get(HeaderPath); p != "" {
		m.Path = strings.Split(p, ",")
	}
	return m, nil
}

// pathContains reports whether region is on path.
func pathContains(path []string, region string) bool {
	for _, r := range path {
		if r == region {
			return true
		}
	}
	return false
}
