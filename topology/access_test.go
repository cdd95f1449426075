package topology

import (
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// testNames mirror the running system's shapes (GEO_<r>, geo.<r>.*,
// geo_from_<s>_to_<r>, geo.hb.<r>, geogate.fwd.<r>) without importing it.
var testNames = Names{
	Stream:         func(r string) string { return "GEO_" + r },
	StreamSubjects: func(r string) string { return "geo." + r + ".*" },
	Consumer:       func(s, r string) string { return "geo_from_" + s + "_to_" + r },
	Heartbeat:      func(r string) string { return "geo.hb." + r },
	Forward:        func(r string) string { return "geogate.fwd." + r },
	Clock:          func(r string) string { return "geogate.clock." + r },
	Lifecycle:      func(r string) string { return "geogate.lifecycle." + r },
	Inbox:          func(r string) string { return "_GEO_INBOX." + r },
}

// matches reports whether the NATS subject pattern (with * and >) matches
// the literal subject.
func matches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || tok != "*" && tok != s[i] {
			return false
		}
	}
	return len(p) == len(s)
}

func anyMatches(patterns []string, subject string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return matches(p, subject) })
}

// mayPublish is what the server decides: allowed and not denied.
func mayPublish(g Grant, subject string) bool {
	return anyMatches(g.PublishAllow, subject) && !anyMatches(g.PublishDeny, subject)
}

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{">", "a.b", true}, {"a.>", "a", false}, {"a.>", "a.b.c", true}, {"a.*", "a.b", true},
		{"a.*", "a.b.c", false}, {"a.b", "a.b", true}, {"a.b", "a.c", false},
	} {
		if got := matches(c.p, c.s); got != c.want {
			t.Errorf("matches(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

// TestGrantsLaws checks, for every kind and deployment size, that what each
// region may do on each server follows from the plan: the owner anything;
// a peer forward, receive on its own inbox, and use its own consumer and
// the heartbeats exactly when it pulls from that server; never publish into
// the stream, use another region's consumer or inbox, or any stream API.
func TestGrantsLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		kind := rapid.SampledFrom(Kinds()).Draw(t, "kind")
		p := genPlan(t, kind, 1, 6)
		regions := p.Regions()
		for _, server := range regions {
			grants := p.Grants(server, testNames)
			if len(grants) != len(regions) {
				t.Fatalf("%s: %d grants on %s for %d regions", p, len(grants), server, len(regions))
			}
			for i, g := range grants {
				if g.User != regions[i] {
					t.Fatalf("grant %d on %s is for %s, want %s", i, server, g.User, regions[i])
				}
				if g.User == server {
					if !g.Owner || !mayPublish(g, "geo."+server+"."+server) || !anyMatches(g.SubscribeAllow, "anything.at.all") {
						t.Fatalf("the owner %s may not do everything on its server: %+v", server, g)
					}
					continue
				}
				r := g.User
				if g.Owner {
					t.Fatalf("%s is owner on %s's server", r, server)
				}
				pulls := p.HasLink(server, r)
				stream, own := testNames.Stream(server), testNames.Consumer(server, r)
				// What the link and home forwarding need.
				needs := map[string]bool{
					"geogate.fwd." + server:                                                   true,
					"$JS.API.CONSUMER.CREATE." + stream + "." + own:                           pulls,
					"$JS.API.CONSUMER.CREATE." + stream + "." + own + ".geo." + server + ".x": pulls,
					"$JS.API.CONSUMER.INFO." + stream + "." + own:                             pulls,
					"$JS.API.CONSUMER.MSG.NEXT." + stream + "." + own:                         pulls,
					"$JS.API.CONSUMER.DELETE." + stream + "." + own:                           pulls,
					"$JS.ACK." + stream + "." + own + ".1.2.3.4.5":                            pulls,
					"geogate.lifecycle." + server:                                             pulls,
				}
				for subj, want := range needs {
					if got := mayPublish(g, subj); got != want {
						t.Fatalf("%s on %s's server (link %v): publish %s = %v, want %v", r, server, pulls, subj, got, want)
					}
				}
				if !anyMatches(g.SubscribeAllow, "_GEO_INBOX."+r+".abc.1") {
					t.Fatalf("%s cannot receive replies on %s's server", r, server)
				}
				if got := anyMatches(g.SubscribeAllow, "geo.hb."+server); got != pulls {
					t.Fatalf("%s on %s's server: heartbeats %v, link %v", r, server, got, pulls)
				}
				// What no peer may ever do.
				for _, o := range regions {
					if mayPublish(g, "geo."+server+"."+o) {
						t.Fatalf("%s may publish into %s's stream (origin %s)", r, server, o)
					}
					if o != r {
						if anyMatches(g.SubscribeAllow, "_GEO_INBOX."+o+".x") {
							t.Fatalf("%s may read %s's inbox on %s's server", r, o, server)
						}
						other := stream + "." + testNames.Consumer(server, o)
						for _, api := range []string{"CREATE", "INFO", "MSG.NEXT", "DELETE"} {
							if mayPublish(g, "$JS.API.CONSUMER."+api+"."+other) {
								t.Fatalf("%s may %s %s's consumer on %s's server", r, api, o, server)
							}
						}
						if mayPublish(g, "$JS.ACK."+other+".1.2.3.4.5") {
							t.Fatalf("%s may ack for %s on %s's server", r, o, server)
						}
					}
				}
				if got := mayPublish(g, "$JS.API.STREAM.INFO."+stream); got != pulls {
					t.Fatalf("%s on %s's server: stream info %v, link %v", r, server, got, pulls)
				}
				for _, api := range []string{"STREAM.DELETE.", "STREAM.PURGE.", "STREAM.UPDATE.", "STREAM.CREATE.", "STREAM.MSG.DELETE.", "STREAM.MSG.GET.", "DIRECT.GET."} {
					if mayPublish(g, "$JS.API."+api+stream) {
						t.Fatalf("%s may use $JS.API.%s on %s's server", r, api+stream, server)
					}
				}
				if anyMatches(g.SubscribeAllow, "geogate.fwd."+server) || anyMatches(g.SubscribeAllow, "geo."+server+"."+server) {
					t.Fatalf("%s may subscribe to %s's forwarding or stream subjects", r, server)
				}
			}
		}
		if p.Grants("not-a-region", testNames) != nil {
			t.Fatal("grants for a server outside the plan")
		}
	})
}

// TestGrantsDenyStreamEvenIfAllowed: the deny of a server's stream
// subjects wins over any allow, even with names whose forwarding subject
// falls into a stream (geo.fwd.<r> against the stream subjects geo.fwd.* of
// a region named "fwd"): a peer never publishes into the stream.
func TestGrantsDenyStreamEvenIfAllowed(t *testing.T) {
	p, err := New([]string{"fwd", "a"}, Spec{Kind: AllToAll})
	if err != nil {
		t.Fatal(err)
	}
	overlapping := testNames
	overlapping.Forward = func(r string) string { return "geo.fwd." + r }
	for _, g := range p.Grants("fwd", overlapping) {
		if g.User == "a" && mayPublish(g, "geo.fwd.fwd") {
			t.Fatalf("a may publish into fwd's stream: %+v", g)
		}
	}
}
