package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/gateway/pki"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/topology"
	"github.com/geogate/geogate/topology/link"
)

// securedRegion is one region's NATS side, built exactly as a node builds
// it from its config: its embedded server (the users and permissions of
// the plan) and the connection options it uses towards peers.
type securedRegion struct {
	node   *Node // cfg and sec only: enough for natsConn
	server *link.Server
}

// startSecuredServers starts the embedded servers of every region of a
// star deployment (hub, a, b) secured with m, without the rest of the
// nodes.
func startSecuredServers(t *testing.T, m *deploy.Material, plan *topology.Plan, regions []string) map[string]*securedRegion {
	t.Helper()
	out := map[string]*securedRegion{}
	for _, r := range regions {
		cfg := config.Default()
		cfg.Region = r
		cfg.Regions = map[string]config.Endpoints{}
		for i, p := range regions {
			cfg.Regions[p] = config.Endpoints{HTTP: fmt.Sprintf("https://127.0.0.1:%d", 1+i), NATS: fmt.Sprintf("tls://127.0.0.1:%d", 1001+i)}
		}
		cfg.Topology = config.Topology{Kind: string(plan.Kind()), Hub: plan.Hub()}
		cfg.SetRegionOrder(regions)
		cfg.DataDir = t.TempDir()
		m.Secure(cfg, r)
		cfg.Complete()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		sec, err := loadSecurity(cfg, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		n := &Node{cfg: cfg, sec: sec, plan: plan, log: testLogger()}
		srv, err := link.StartServer(n.natsServerOptions(link.ServerOptions{Name: r, Port: -1, StoreDir: t.TempDir(), Logger: testLogger()}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown)
		out[r] = &securedRegion{node: n, server: srv}
	}
	return out
}

// violations collects a connection's permission violations.
type violations struct {
	mu   sync.Mutex
	errs []string
	ch   chan struct{}
}

func newViolations() *violations { return &violations{ch: make(chan struct{}, 100)} }

func (v *violations) handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			v.mu.Lock()
			v.errs = append(v.errs, err.Error())
			v.mu.Unlock()
			select {
			case v.ch <- struct{}{}:
			default:
			}
		}
	})
}

// waitFor waits until a violation naming subject was reported.
func (v *violations) waitFor(subject string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		v.mu.Lock()
		for _, e := range v.errs {
			if strings.Contains(e, `"`+subject+`"`) {
				v.mu.Unlock()
				return true
			}
		}
		v.mu.Unlock()
		select {
		case <-v.ch:
		case <-deadline:
			return false
		}
	}
}

// TestRegionCredentials checks, with real NATS clients against embedded
// servers secured as a node secures them, that a region's credentials do
// on a peer's server exactly what the topology plan grants: read its own
// consumer, receive heartbeats, forward writes; and nothing else.
func TestRegionCredentials(t *testing.T) {
	regions := []string{"hub", "a", "b"}
	plan, err := topology.New(regions, topology.Spec{Kind: topology.Star, Hub: "hub"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := deploy.WriteMaterial(t.TempDir(), regions, deploy.MaterialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := startSecuredServers(t, m, plan, regions)
	hubURL := srv["hub"].server.ClientURL()
	ctx := context.Background()

	connect := func(t *testing.T, as string, toPeer bool, extra ...nats.Option) (*nats.Conn, *violations) {
		t.Helper()
		v := newViolations()
		peer := ""
		if toPeer {
			peer = "hub"
		}
		opts := append(srv[as].node.natsConn("test "+as, peer).Options(), v.handler())
		nc, err := nats.Connect(hubURL, append(opts, extra...)...)
		if err != nil {
			t.Fatalf("connect as %s: %v", as, err)
		}
		t.Cleanup(nc.Close)
		return nc, v
	}

	// The hub, on its own server: creates its stream and one event.
	owner, _ := connect(t, "hub", false)
	ojs, err := jetstream.New(owner)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := ojs.CreateStream(ctx, jetstream.StreamConfig{Name: link.StreamName("hub"), Subjects: []string{link.StreamSubjects("hub")}})
	if err != nil {
		t.Fatal(err)
	}
	oseq := 0
	pub := func(subject string) {
		t.Helper()
		oseq++
		msg := &nats.Msg{Subject: subject, Header: nats.Header{link.HeaderMsgID: {fmt.Sprintf("hub~e1:%d", oseq)}}, Data: []byte("event")}
		if _, err := ojs.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	pub(link.Subject("hub", "hub"))
	msgs := func() uint64 {
		t.Helper()
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatalf("stream info: %v", err)
		}
		return info.State.Msgs
	}

	t.Run("allowed", func(t *testing.T) {
		nc, v := connect(t, "a", true)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		// The stream's info.
		if _, err := js.Stream(ctx, link.StreamName("hub")); err != nil {
			t.Fatalf("stream info: %v", err)
		}
		// Its own durable consumer, with several filters and with one.
		cfg := jetstream.ConsumerConfig{Durable: link.ConsumerName("hub", "a"), AckPolicy: jetstream.AckExplicitPolicy,
			FilterSubjects: []string{link.Subject("hub", "hub"), link.Subject("hub", "b")}}
		cons, err := js.CreateOrUpdateConsumer(ctx, link.StreamName("hub"), cfg)
		if err != nil {
			t.Fatalf("create own consumer: %v", err)
		}
		cfg.FilterSubjects, cfg.FilterSubject = nil, link.Subject("hub", "hub")
		if _, err := js.CreateOrUpdateConsumer(ctx, link.StreamName("hub"), cfg); err != nil {
			t.Fatalf("update own consumer with one filter: %v", err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		n := 0
		for msg := range batch.Messages() {
			if err := msg.DoubleAck(ctx); err != nil {
				t.Fatalf("ack: %v", err)
			}
			n++
		}
		if n != 1 || batch.Error() != nil {
			t.Fatalf("fetched %d messages (%v), want 1", n, batch.Error())
		}
		info, err := cons.Info(ctx)
		if err != nil || info.AckFloor.Stream != 1 {
			t.Fatalf("consumer info: %v, ack floor %+v", err, info)
		}
		// Heartbeats of the hub.
		hb, err := nc.SubscribeSync(link.HeartbeatSubject("hub"))
		if err != nil {
			t.Fatal(err)
		}
		nc.Flush()                                                //nolint:errcheck // checked by the receive
		owner.Publish(link.HeartbeatSubject("hub"), []byte(`{}`)) //nolint:errcheck // checked by the receive
		if _, err := hb.NextMsg(2 * time.Second); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		// Home forwarding to the hub.
		svc, err := owner.Subscribe(forwardSubject("hub"), func(m *nats.Msg) { m.Respond([]byte("ok")) }) //nolint:errcheck // test
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Unsubscribe() //nolint:errcheck // test
		owner.Flush()           //nolint:errcheck // test
		if reply, err := nc.Request(forwardSubject("hub"), []byte("w"), 2*time.Second); err != nil || string(reply.Data) != "ok" {
			t.Fatalf("forward request: %v %v", reply, err)
		}
		// A tool with a's credentials and the default inbox (nats.go's,
		// the nats CLI's) reads a's consumer too.
		a := srv["a"].node.sec
		tool, err := nats.Connect(hubURL, nats.Secure(a.natsClientTLS), nats.Nkey(a.nkeyPub, a.nkey.Sign), v.handler())
		if err != nil {
			t.Fatal(err)
		}
		defer tool.Close()
		tjs, _ := jetstream.New(tool)
		if _, err := tjs.Consumer(ctx, link.StreamName("hub"), link.ConsumerName("hub", "a")); err != nil {
			t.Fatalf("a tool with a's credentials: consumer info: %v", err)
		}
		// Its own consumer deleted (a link that gains an origin recreates
		// it from the stream's start) and created again.
		if err := js.DeleteConsumer(ctx, link.StreamName("hub"), link.ConsumerName("hub", "a")); err != nil {
			t.Fatalf("delete own consumer: %v", err)
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, link.StreamName("hub"), cfg); err != nil {
			t.Fatalf("create own consumer again: %v", err)
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		if len(v.errs) > 0 {
			t.Fatalf("permission violations on allowed actions: %v", v.errs)
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		nc, v := connect(t, "a", true)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		// b's consumer exists (created by the hub for the test).
		bcons, err := ojs.CreateOrUpdateConsumer(ctx, link.StreamName("hub"), jetstream.ConsumerConfig{
			Durable: link.ConsumerName("hub", "b"), AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		before := msgs()
		short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 200*time.Millisecond) }
		denied := func(what, subject string, op func(context.Context) error) {
			t.Helper()
			c, cancel := short()
			err := op(c)
			cancel()
			if err == nil {
				t.Errorf("%s: allowed, want refused", what)
				return
			}
			if subject != "" && !v.waitFor(subject, 2*time.Second) {
				t.Errorf("%s: no permission violation reported for %s (err %v)", what, subject, err)
			}
		}
		hub := link.StreamName("hub")
		for _, s := range []string{link.Subject("hub", "a"), link.Subject("hub", "hub")} {
			denied("publish into the hub's stream on "+s, s, func(c context.Context) error {
				_, err := js.Publish(c, s, []byte("forged"))
				return err
			})
			nc.Publish(s, []byte("forged")) //nolint:errcheck // refused by the server
		}
		denied("delete the hub's stream", "$JS.API.STREAM.DELETE."+hub, func(c context.Context) error { return js.DeleteStream(c, hub) })
		denied("purge the hub's stream", "$JS.API.STREAM.PURGE."+hub, func(c context.Context) error {
			_, err := nc.RequestWithContext(c, "$JS.API.STREAM.PURGE."+hub, []byte("{}"))
			return err
		})
		denied("update the hub's stream", "$JS.API.STREAM.UPDATE."+hub, func(c context.Context) error {
			_, err := js.UpdateStream(c, jetstream.StreamConfig{Name: hub, Subjects: []string{"geo.hub.*", "stolen.>"}})
			return err
		})
		denied("create a stream", "$JS.API.STREAM.CREATE.EVIL", func(c context.Context) error {
			_, err := js.CreateStream(c, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil"}})
			return err
		})
		denied("create b's consumer", "$JS.API.CONSUMER.CREATE."+hub+"."+link.ConsumerName("hub", "b"), func(c context.Context) error {
			_, err := js.CreateOrUpdateConsumer(c, hub, jetstream.ConsumerConfig{Durable: link.ConsumerName("hub", "b"), FilterSubjects: []string{"geo.hub.a", "geo.hub.hub"}})
			return err
		})
		denied("create an ephemeral consumer", "", func(c context.Context) error {
			_, err := js.CreateConsumer(c, hub, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
			return err
		})
		denied("read b's consumer info", "$JS.API.CONSUMER.INFO."+hub+"."+link.ConsumerName("hub", "b"), func(c context.Context) error {
			_, err := js.Consumer(c, hub, link.ConsumerName("hub", "b"))
			return err
		})
		next := "$JS.API.CONSUMER.MSG.NEXT." + hub + "." + link.ConsumerName("hub", "b")
		denied("pull from b's consumer", next, func(c context.Context) error {
			_, err := nc.RequestWithContext(c, next, []byte(`{"batch":1}`))
			return err
		})
		denied("delete b's consumer", "$JS.API.CONSUMER.DELETE."+hub+"."+link.ConsumerName("hub", "b"), func(c context.Context) error {
			return js.DeleteConsumer(c, hub, link.ConsumerName("hub", "b"))
		})
		// Reading what is not its own: other inboxes, the forwarding
		// service's requests, everything.
		for _, s := range []string{inboxPrefix("b") + ".>", "_GEO_INBOX.>", forwardSubject("hub"), ">", link.Subject("hub", "hub")} {
			if _, err := nc.SubscribeSync(s); err != nil {
				t.Fatal(err)
			}
			if !v.waitFor(s, 2*time.Second) {
				t.Errorf("subscribe %s: no permission violation", s)
			}
		}

		// Nothing changed on the hub's server.
		if got := msgs(); got != before {
			t.Errorf("the hub's stream holds %d messages, had %d: a region published into a peer's stream", got, before)
		}
		info, err := bcons.Info(ctx)
		if err != nil {
			t.Fatalf("b's consumer is gone: %v", err)
		}
		if info.Delivered.Stream != 0 || info.Config.FilterSubjects != nil {
			t.Errorf("b's consumer was read or changed: %+v", info)
		}
		names := stream.ConsumerNames(ctx)
		var all []string
		for n := range names.Name() {
			all = append(all, n)
		}
		if len(all) != 2 {
			t.Errorf("consumers on the hub's stream: %v, want a's and b's only", all)
		}
		s, err := ojs.Stream(ctx, hub)
		if err != nil || len(s.CachedInfo().Config.Subjects) != 1 {
			t.Errorf("the hub's stream was changed or deleted: %v", err)
		}
		if _, err := ojs.Stream(ctx, "EVIL"); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("a stream EVIL exists: %v", err)
		}
	})

	t.Run("a real link", func(t *testing.T) {
		got := make(chan link.Message, 10)
		l, err := link.NewLink(link.LinkConfig{Region: "b", Peer: "hub", URL: hubURL, Origins: []string{"a", "hub"},
			Applier: applierFunc(func(msgs []link.Message) {
				for _, m := range msgs {
					got <- m
				}
			}), Conn: srv["b"].node.natsConn("", "hub"), Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { l.Run(lctx); close(done) }() //nolint:errcheck // ends with ctx
		defer func() { cancel(); <-done }()
		select {
		case m := <-got:
			if m.OriginRegion != "hub" {
				t.Fatalf("link delivered %+v", m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the link of b with b's credentials received nothing: %+v", l.Status())
		}
	})

	t.Run("no link, no consumer", func(t *testing.T) {
		// In the star, spoke a does not pull from spoke b: on b's server it
		// may only forward writes.
		v := newViolations()
		nc, err := nats.Connect(srv["b"].server.ClientURL(), append(srv["a"].node.natsConn("test a", "b").Options(), v.handler())...)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		subj := "$JS.API.CONSUMER.CREATE." + link.StreamName("b") + "." + link.ConsumerName("b", "a")
		if _, err := js.CreateOrUpdateConsumer(c, link.StreamName("b"), jetstream.ConsumerConfig{Durable: link.ConsumerName("b", "a"),
			FilterSubjects: []string{"geo.b.b", "geo.b.hub"}}); err == nil || !v.waitFor(subj, 2*time.Second) {
			t.Errorf("a created a consumer on b's server without a link b -> a (err %v)", err)
		}
		if _, err := nc.SubscribeSync(link.HeartbeatSubject("b")); err != nil || !v.waitFor(link.HeartbeatSubject("b"), 2*time.Second) {
			t.Errorf("a may receive b's heartbeats without a link b -> a")
		}
	})

	t.Run("refused clients", func(t *testing.T) {
		a := srv["a"].node.sec
		roots := a.natsClientTLS.RootCAs
		aKey := nats.Nkey(a.nkeyPub, a.nkey.Sign)
		stranger, _ := nkeys.CreateUser()
		strangerPub, _ := stranger.PublicKey()

		// Another deployment's certificate for a.
		other, err := deploy.WriteMaterial(t.TempDir(), []string{"a"}, deploy.MaterialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		otherPair, err := pki.LoadPair(other.Nodes["a"].CertFile, other.Nodes["a"].KeyFile, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Certificates from the right CA, outside their validity.
		now := time.Now()
		pairFor := func(notBefore, notAfter time.Time) *pki.Pair {
			leaf, err := m.CA.Issue(pki.IssueOptions{CommonName: "a", Hosts: []string{"127.0.0.1"}, NotBefore: notBefore, NotAfter: notAfter})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := leaf.WriteFiles(dir+"/c.pem", dir+"/k.pem"); err != nil {
				t.Fatal(err)
			}
			p, err := pki.LoadPair(dir+"/c.pem", dir+"/k.pem", nil)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		expired := pairFor(now.Add(-48*time.Hour), now.Add(-24*time.Hour))
		early := pairFor(now.Add(24*time.Hour), now.Add(48*time.Hour))

		// A plain-text client: the server expects a TLS handshake and
		// closes the connection instead of answering.
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", srv["hub"].server.Port()))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // test
		rd := bufio.NewReader(conn)
		if line, err := rd.ReadString('\n'); err != nil || !strings.Contains(line, `"tls_required":true`) {
			t.Fatalf("INFO of the hub's server: %q %v; want tls_required", line, err)
		}
		fmt.Fprint(conn, "CONNECT {\"verbose\":false}\r\nPING\r\n")
		if rest, _ := io.ReadAll(rd); strings.Contains(string(rest), "PONG") {
			t.Errorf("a plain-text client got %q", rest)
		}
		conn.Close()

		cases := []struct {
			name   string
			opts   []nats.Option
			reason string
		}{
			{"anonymous, not trusting the server's CA", nil, ""},
			{"anonymous over TLS with a valid certificate", []nats.Option{nats.Secure(a.natsClientTLS)}, link.RefusedAuth},
			{"an unknown nkey", []nats.Option{nats.Secure(a.natsClientTLS), nats.Nkey(strangerPub, stranger.Sign)}, link.RefusedAuth},
			{"a's nkey without a client certificate", []nats.Option{nats.Secure(pki.ClientConfig(roots, nil)), aKey}, link.RefusedTLS},
			{"a's nkey with another deployment's certificate", []nats.Option{nats.Secure(pki.ClientConfig(roots, otherPair)), aKey}, link.RefusedTLS},
			{"a's nkey with an expired certificate", []nats.Option{nats.Secure(pki.ClientConfig(roots, expired)), aKey}, link.RefusedTLS},
			{"a's nkey with a certificate not yet valid", []nats.Option{nats.Secure(pki.ClientConfig(roots, early)), aKey}, link.RefusedTLS},
		}
		hubSec := srv["hub"].node.sec
		for _, tc := range cases {
			before := failureCount(t, hubSec.failures, tc.reason)
			nc, err := nats.Connect(hubURL, append([]nats.Option{nats.Timeout(2 * time.Second)}, tc.opts...)...)
			if err == nil {
				nc.Close()
				t.Errorf("%s: connected, want refused", tc.name)
				continue
			}
			t.Logf("%s: %v", tc.name, err)
			if tc.reason == "" {
				continue
			}
			grew := func() bool { return failureCount(t, hubSec.failures, tc.reason) > before }
			if wait.Until(context.Background(), 2*time.Second, "the failure count", grew) != nil {
				t.Errorf("%s: geogate_auth_failures_total{reason=%q} did not grow", tc.name, tc.reason)
			}
		}
	})
}

// failureCount reads geogate_auth_failures_total{reason} from f.
func failureCount(t *testing.T, f *auth.Failures, reason string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// applierFunc is an Applier that hands every message to f and reports it
// done.
type applierFunc func([]link.Message)

func (f applierFunc) Apply(_ context.Context, _ string, msgs []link.Message) ([]link.Result, error) {
	f(msgs)
	done := make([]link.Result, len(msgs))
	for i := range done {
		done[i] = link.Result{Verdict: link.Applied}
	}
	return done, nil
}
