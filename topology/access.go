package topology

import "slices"

// Names are the NATS names the running system gives to what the plan
// describes. The plan does not own them (topology/link names streams,
// consumers and heartbeats; the gateway names its forwarding subject), so
// the caller passes them in; Grants only combines them.
type Names struct {
	// Stream is the name of a region's stream (link.StreamName).
	Stream func(region string) string
	// StreamSubjects is the subject filter of a region's stream
	// (link.StreamSubjects).
	StreamSubjects func(region string) string
	// Consumer is the durable consumer puller runs on stream's stream
	// (link.ConsumerName(stream, puller)).
	Consumer func(stream, puller string) string
	// Heartbeat is the subject a region's heartbeats travel on
	// (link.HeartbeatSubject).
	Heartbeat func(region string) string
	// Forward is the subject on which a region serves writes forwarded to
	// it as their home region.
	Forward func(region string) string
	// Clock is the subject on which a region answers clock probes (its
	// peers measure their clocks' offset from it).
	Clock func(region string) string
	// Lifecycle is the subject on which a region serves the regions that
	// pull from it: snapshots (re-seeding), anti-entropy and the exchange
	// of applied positions (tombstone collection). Nil: none granted.
	Lifecycle func(region string) string
	// Inbox is the inbox prefix of a region's connections to its peers'
	// servers: replies to its requests and the messages its consumers
	// pull arrive under Inbox(region) + ".>".
	Inbox func(region string) string
}

// Grant is what one region's user may do on one region's NATS server: the
// subjects it may publish to and subscribe to. Anything not allowed is
// refused by the server; Deny wins over Allow.
type Grant struct {
	// User is the region the grant is for.
	User string
	// Owner is true for the server's own region, which may do anything on
	// its own server (it creates its stream, publishes into it, reads its
	// downstream consumers' progress, serves forwarded writes).
	Owner bool
	// PublishAllow and SubscribeAllow list the subjects (wildcards
	// allowed) the user may publish to and subscribe to.
	PublishAllow   []string
	SubscribeAllow []string
	// PublishDeny lists subjects refused even if an allow matches: for a
	// peer, the server's stream subjects.
	PublishDeny []string
}

// DefaultInbox is where NATS clients receive replies unless told another
// prefix (nats.go, the nats CLI). Every region may receive there too, so
// that a tool using a region's credentials works without options; the
// regions' own connections use their own prefixes (Names.Inbox).
const DefaultInbox = "_INBOX.>"

// JetStream API subjects a link uses on its peer's server, for one
// durable consumer (the consumer's stream and name follow the prefix), and
// the stream's info, which reading it may ask for.
const (
	jsStreamInfo     = "$JS.API.STREAM.INFO."
	jsConsumerCreate = "$JS.API.CONSUMER.CREATE."
	jsConsumerInfo   = "$JS.API.CONSUMER.INFO."
	jsConsumerNext   = "$JS.API.CONSUMER.MSG.NEXT."
	jsConsumerDelete = "$JS.API.CONSUMER.DELETE."
	jsAck            = "$JS.ACK."
)

// Grants returns the users of server's NATS server, one per region of the
// plan in Regions order, or nil when server is not a region of the plan.
//
// Least privilege, derived from the plan and nothing else:
//   - server's own region may do anything (Owner);
//   - every other region R may send home-forwarding requests to the server
//     (Forward(server)): any key may be homed in any region; and clock
//     probes (Clock(server)): every region measures its clock against
//     every other;
//   - R receives replies and pulled messages under its own inbox prefix
//     (Inbox(R)), which no other region may read, and under DefaultInbox
//     (for tools using its credentials; no region's own connections use
//     it);
//   - only when the plan has the link server -> R: R may read the stream's
//     info, create, update, delete and read the info of its own durable
//     consumer Consumer(server, R) on Stream(server) (a link that gains an
//     origin recreates it from the stream's start), pull from it,
//     acknowledge its messages, receive the server's heartbeats, and send
//     requests to the server's lifecycle service (Lifecycle(server):
//     snapshots to re-seed from, anti-entropy, applied positions);
//   - R may never publish into the server's stream subjects (denied even
//     if another allow would match), nor use any other JetStream API: it
//     cannot delete, purge or change a stream, nor create, delete or read
//     another region's consumer.
func (p *Plan) Grants(server string, names Names) []Grant {
	if !p.Has(server) {
		return nil
	}
	out := make([]Grant, 0, len(p.regions))
	for _, r := range p.regions {
		if r == server {
			out = append(out, Grant{User: r, Owner: true, PublishAllow: []string{">"}, SubscribeAllow: []string{">"}})
			continue
		}
		g := Grant{
			User:           r,
			PublishAllow:   []string{names.Forward(server), names.Clock(server)},
			SubscribeAllow: []string{names.Inbox(r) + ".>", DefaultInbox},
			PublishDeny:    []string{names.StreamSubjects(server)},
		}
		if p.HasLink(server, r) {
			stream, consumer := names.Stream(server), names.Consumer(server, r)
			own := stream + "." + consumer
			g.PublishAllow = append(g.PublishAllow,
				jsStreamInfo+stream,
				jsConsumerCreate+own,      // create or update, several filter subjects
				jsConsumerCreate+own+".>", // create or update, one filter subject in the name
				jsConsumerInfo+own,
				jsConsumerNext+own,
				jsConsumerDelete+own,
				jsAck+own+".>",
			)
			if names.Lifecycle != nil {
				g.PublishAllow = append(g.PublishAllow, names.Lifecycle(server))
			}
			g.SubscribeAllow = append(g.SubscribeAllow, names.Heartbeat(server))
		}
		slices.Sort(g.PublishAllow)
		slices.Sort(g.SubscribeAllow)
		out = append(out, g)
	}
	return out
}
