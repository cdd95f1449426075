package link

import (
	"errors"
	"github.com/geogate/geogate/topology"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestNames(t *testing.T) {
	cases := []struct{ got, want string }{
		{StreamName("us-east"), "GEO_us-east"},
		{StreamName("a.b c/d\\e*f>g"), "GEO_a_b_c_d_e_f_g"},
		{StreamName("é"), "GEO___"},
		{Subject("us-east", "eu-west"), "geo.us-east.eu-west"},
		{StreamSubjects("us-east"), "geo.us-east.*"},
		{HeartbeatSubject("us-east"), "geo.hb.us-east"},
		{ConsumerName("us-east", "eu-west"), "geo_from_us-east_to_eu-west"},
		{ConsumerName("a.b", "c"), "geo_from_a_b_to_c"},
		{MsgID("us-east~a1b2c3", 42), "us-east~a1b2c3:42"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestValidateRegion(t *testing.T) {
	cases := map[string]bool{
		"us-east": true, "a": true, "r0": true, "eu-west-2": true,
		"": false, "hb": false, "US": false, "a.b": false, "a_b": false, "a b": false, "*": false, ">": false,
		strings.Repeat("a", topology.MaxRegionLen): true, strings.Repeat("a", topology.MaxRegionLen+1): false,
	}
	for name, ok := range cases {
		err := ValidateRegion(name)
		if (err == nil) != ok {
			t.Errorf("ValidateRegion(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidRegion) {
			t.Errorf("ValidateRegion(%q) error %v is not ErrInvalidRegion", name, err)
		}
	}
}

// Sanitized names never hold a character a stream or consumer name cannot,
// keep their length, and leave valid region names unchanged.
func TestSanitizeNameProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.String().Draw(t, "s")
		got := sanitizeName(s)
		if len(got) != len(s) {
			t.Fatalf("length %d, want %d", len(got), len(s))
		}
		if strings.ContainsAny(got, ".*> \t\r\n/\\") {
			t.Fatalf("%q holds a forbidden character", got)
		}
		if ValidateRegion(s) == nil && got != s {
			t.Fatalf("valid region %q changed to %q", s, got)
		}
	})
}

// decodeMsg(encodeMsg(e)) gives back the entry's identity, payload and path,
// with the publishing region appended to the path exactly once, and
// decodeResume gives back the outbox position and acknowledged prefix.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	region := rapid.StringMatching(`[a-z0-9-]{1,8}`).Filter(func(s string) bool { return s != HeartbeatToken })
	rapid.Check(t, func(t *rapid.T) {
		stream := region.Draw(t, "stream")
		e := OutboxEntry{
			Seq:          rapid.Uint64Min(1).Draw(t, "seq"),
			OriginRegion: region.Draw(t, "originRegion"),
			OSeq:         rapid.Uint64Min(1).Draw(t, "oseq"),
			Path:         rapid.SliceOfN(region, 0, 4).Draw(t, "path"),
			Data:         rapid.SliceOf(rapid.Byte()).Draw(t, "data"),
		}
		e.Origin = e.OriginRegion + "~" + rapid.StringMatching(`[a-z0-9]{1,6}`).Draw(t, "epoch")
		acked := ackedPrefix{seq: rapid.Uint64Max(e.Seq-1).Draw(t, "acked")}
		if acked.seq > 0 {
			acked.stream = rapid.Uint64Min(1).Draw(t, "ackedSeq")
		}
		before := slices.Clone(e.Path)
		msg := encodeMsg(stream, e, acked)
		if !slices.Equal(e.Path, before) {
			t.Fatalf("encode modified the entry's path: %v -> %v", before, e.Path)
		}
		if got := msg.Header.Get(HeaderMsgID); got != MsgID(e.Origin, e.OSeq) {
			t.Fatalf("msg id %q", got)
		}
		m, err := decodeMsg(stream, msg.Subject, msg.Header, msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		wantPath := before
		if len(wantPath) == 0 || wantPath[len(wantPath)-1] != stream {
			wantPath = append(slices.Clone(wantPath), stream)
		}
		if m.Stream != stream || m.Origin != e.Origin || m.OriginRegion != e.OriginRegion || m.OSeq != e.OSeq ||
			string(m.Data) != string(e.Data) || !slices.Equal(m.Path, wantPath) {
			t.Fatalf("decoded %+v from %+v (path want %v)", m, e, wantPath)
		}
		r, ok := decodeResume(msg.Header)
		if !ok || r != (resumeMark{seq: e.Seq, acked: acked, id: MsgID(e.Origin, e.OSeq)}) {
			t.Fatalf("resume mark %+v (ok %v) from seq %d acked %d", r, ok, e.Seq, acked)
		}
	})
}

// A message without usable Geo-Seq / Geo-Acked headers (written before
// they existed, or damaged) gives no resume mark: the publisher then
// republishes every untrimmed entry instead of guessing.
func TestDecodeResumeRejects(t *testing.T) {
	good := encodeMsg("a", OutboxEntry{Seq: 9, Origin: "a~x", OriginRegion: "a", OSeq: 7}, ackedPrefix{seq: 4, stream: 40})
	if r, ok := decodeResume(good.Header); !ok || r != (resumeMark{seq: 9, id: "a~x:7", acked: ackedPrefix{seq: 4, stream: 40}}) {
		t.Fatalf("good header: %+v %v", r, ok)
	}
	cases := []struct {
		name string
		del  string
		set  [2]string
	}{
		{name: "no seq", del: HeaderSeq},
		{name: "no acked", del: HeaderAcked},
		{name: "no acked seq", del: HeaderAckedSeq},
		{name: "acked without its seq", set: [2]string{HeaderAckedSeq, "0"}},
		{name: "no msg id", del: HeaderMsgID},
		{name: "zero seq", set: [2]string{HeaderSeq, "0"}},
		{name: "acked not below seq", set: [2]string{HeaderAcked, "9"}},
		{name: "bad acked", set: [2]string{HeaderAcked, "-1"}},
	}
	for _, c := range cases {
		h := make(map[string][]string)
		for k, v := range good.Header {
			h[k] = v
		}
		delete(h, c.del)
		if c.set[0] != "" {
			h[c.set[0]] = []string{c.set[1]}
		}
		if r, ok := decodeResume(h); ok {
			t.Errorf("%s: accepted as %+v", c.name, r)
		}
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	good := encodeMsg("a", OutboxEntry{Seq: 1, Origin: "a~x", OriginRegion: "a", OSeq: 7}, ackedPrefix{})
	cases := []struct {
		name    string
		subject string
		del     string
		set     [2]string
	}{
		{name: "foreign subject", subject: "geo.b.a"},
		{name: "nested subject", subject: "geo.a.a.x"},
		{name: "no message id", subject: good.Subject, del: HeaderMsgID},
		{name: "no origin", subject: good.Subject, set: [2]string{HeaderMsgID, ":7"}},
		{name: "no oseq", subject: good.Subject, set: [2]string{HeaderMsgID, "a~x"}},
		{name: "zero oseq", subject: good.Subject, set: [2]string{HeaderMsgID, "a~x:0"}},
		{name: "bad oseq", subject: good.Subject, set: [2]string{HeaderMsgID, "a~x:y"}},
	}
	if _, err := decodeMsg("a", good.Subject, good.Header, nil); err != nil {
		t.Fatalf("good message refused: %v", err)
	}
	for _, c := range cases {
		h := good.Header
		if c.del != "" || c.set[0] != "" {
			h = make(map[string][]string)
			for k, v := range good.Header {
				h[k] = v
			}
			delete(h, c.del)
			if c.set[0] != "" {
				h.Set(c.set[0], c.set[1])
			}
		}
		if _, err := decodeMsg("a", c.subject, h, nil); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

// TestConsumerTarget: only this region's link consumers are recognised,
// and a region whose name extends this one's is not taken for it.
func TestConsumerTarget(t *testing.T) {
	for _, tc := range []struct {
		region, name, to string
		ok               bool
	}{
		{"a", ConsumerName("a", "b"), "b", true},
		{"a", ConsumerName("a", "us-east"), "us-east", true},
		{"a", ConsumerName("a-b", "c"), "", false},
		{"a-b", ConsumerName("a", "b-c"), "", false},
		{"a", "geo_from_a_to_", "", false},
		{"a", "other", "", false},
	} {
		to, ok := ConsumerTarget(tc.region, tc.name)
		if to != tc.to || ok != tc.ok {
			t.Errorf("ConsumerTarget(%q, %q) = %q, %v; want %q, %v", tc.region, tc.name, to, ok, tc.to, tc.ok)
		}
	}
}
