package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"pgregory.net/rapid"

	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/topology"
	"github.com/geogate/geogate/topology/link"
)

// TestSubjectsOutsideStreams checks, for any set of valid region names
// (always with "fwd", "clock", "conflicts", "geo" and "geogate" among
// them), that no subject a region serves or publishes on besides its
// events falls into any region's stream, and that what the permissions of
// a secured deployment allow a peer to publish is never also denied
// (every allowed literal subject stays usable).
func TestSubjectsOutsideStreams(t *testing.T) {
	names := natsNames()
	rapid.Check(t, func(t *rapid.T) {
		regions := []string{"fwd", "clock", "conflicts", "geo", "geogate"}
		for _, r := range rapid.SliceOfNDistinct(rapid.StringMatching(`[a-z0-9-]{1,12}`), 0, 5, rapid.ID).Draw(t, "regions") {
			if topology.ValidRegion(r) && !strings.Contains(strings.Join(regions, " ")+" ", r+" ") {
				regions = append(regions, r)
			}
		}
		for _, r := range regions {
			own := []string{forwardSubject(r), clockSubject(r), conflictsSubject(r), names.Heartbeat(r), names.Inbox(r) + ".x"}
			for _, s := range regions {
				for _, subj := range own {
					if server.SubjectMatchesFilter(subj, names.StreamSubjects(s)) {
						t.Fatalf("region %s's subject %s falls into the stream of region %s (%s)", r, subj, s, names.StreamSubjects(s))
					}
				}
			}
		}
		plan, err := topology.New(regions, topology.Spec{Kind: topology.AllToAll})
		if err != nil {
			t.Fatal(err)
		}
		for _, srv := range regions {
			for _, g := range plan.Grants(srv, names) {
				for _, allow := range g.PublishAllow {
					for _, deny := range g.PublishDeny {
						if !strings.ContainsAny(allow, "*>") && server.SubjectMatchesFilter(allow, deny) {
							t.Fatalf("on %s's server, %s may publish to %s, but %s denies it", srv, g.User, allow, deny)
						}
					}
				}
			}
		}
	})
}

// TestRegionNamedFwd runs a region named fwd as the home region of some
// keys: a write at the other region is forwarded to it and answered by it,
// its stream holds its own events and nothing else, and replication both
// ways goes on.
func TestRegionNamedFwd(t *testing.T) {
	homed := rules.Spec{Name: "homed", Match: `key startsWith "h/"`, Strategy: "home_region", Home: `"fwd"`}
	c := startCluster(t, []string{"fwd", "us-east"}, "all-to-all", []rules.Spec{homed, lwwDefault()})
	fwd, east := c.Node("fwd"), c.Node("us-east")

	a := do(t, "PUT", east.HTTPURL()+"/v1/kv/h/1", []byte(`{"v":1}`))
	if a.status != 200 || !strings.HasPrefix(fmt.Sprint(a.json(t)["dot"]), fwd.Store().Actor()+":") {
		t.Fatalf("forwarded write: %d %s; want 200 with a dot of %s", a.status, a.body, fwd.Store().Actor())
	}
	if a := do(t, "PUT", fwd.HTTPURL()+"/v1/kv/plain/1", []byte(`{"v":2}`)); a.status != 200 {
		t.Fatalf("write at fwd: %d %s", a.status, a.body)
	}
	if a := do(t, "PUT", east.HTTPURL()+"/v1/kv/plain/2", []byte(`{"v":3}`)); a.status != 200 {
		t.Fatalf("write at us-east: %d %s", a.status, a.body)
	}
	eventually(t, 10*time.Second, "both regions to hold all three keys", func() bool {
		for _, n := range c.Nodes() {
			for _, k := range []string{"h/1", "plain/1", "plain/2"} {
				if do(t, "GET", n.HTTPURL()+"/v1/kv/"+k, nil).status != 200 {
					return false
				}
			}
		}
		return true
	})
	js, err := jetstream.New(fwd.conn)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(context.Background(), link.StreamName("fwd"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != fwd.Store().Seq() {
		t.Fatalf("stream GEO_fwd holds %d messages, region fwd wrote %d events: it captured something else", info.State.Msgs, fwd.Store().Seq())
	}
}
