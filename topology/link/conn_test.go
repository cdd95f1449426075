package link

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// captureHandler is a slog.Handler that keeps every record.
type captureHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

// attrs returns the attributes of the first record with the message msg.
func (h *captureHandler) attrs(msg string) (map[string]slog.Value, slog.Level, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Message == msg {
			m := map[string]slog.Value{}
			r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
			return m, r.Level, true
		}
	}
	return nil, 0, false
}

// TestLogAsyncErrors makes a subscriber too slow for what it is sent: the
// slow-consumer error reaches the log as a warning naming the connection
// and the subject, instead of nats.go's standard error.
func TestLogAsyncErrors(t *testing.T) {
	s := startTestServer(t, "a", -1, t.TempDir())
	h := &captureHandler{}
	nc, err := nats.Connect(s.ClientURL(), nats.Name("slow-one"), LogAsyncErrors(slog.New(h)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	block := make(chan struct{})
	defer close(block)
	sub, err := nc.Subscribe("slow", func(*nats.Msg) { <-block })
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(1, -1); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := nc.Publish("slow", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var attrs map[string]slog.Value
	var level slog.Level
	waitFor(t, 5*time.Second, "the slow-consumer error logged", func() bool {
		var ok bool
		attrs, level, ok = h.attrs("nats connection error")
		return ok
	})
	errAttr, _ := attrs["err"].Any().(error)
	switch {
	case level != slog.LevelWarn:
		t.Errorf("logged at %s, want WARN", level)
	case !errors.Is(errAttr, nats.ErrSlowConsumer):
		t.Errorf("err = %v, want %v", attrs["err"], nats.ErrSlowConsumer)
	case attrs["conn"].String() != "slow-one" || attrs["subject"].String() != "slow":
		t.Errorf("conn %q subject %q, want slow-one and slow", attrs["conn"], attrs["subject"])
	}
}

// TestConnConfig checks the options every geogate connection gets from its
// ConnConfig, and that a reply comes back under the inbox prefix.
func TestConnConfig(t *testing.T) {
	s := startTestServer(t, "a", -1, t.TempDir())
	nc, err := Connect(s.ClientURL(), ConnConfig{Name: "one", Peer: true, Timeout: 1500 * time.Millisecond,
		Credentials: Credentials{InboxPrefix: "_GEO_INBOX.r"}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	o := nc.Opts
	if o.Name != "one" || o.MaxReconnect != -1 || o.ReconnectWait != 250*time.Millisecond || o.PingInterval != 5*time.Second ||
		o.MaxPingsOut != 3 || o.Timeout != 1500*time.Millisecond || !o.IgnoreAuthErrorAbort || o.InboxPrefix != "_GEO_INBOX.r" ||
		o.AsyncErrorCB == nil || o.RetryOnFailedConnect {
		t.Fatalf("options %+v", o)
	}
	sub, err := nc.Subscribe("echo", func(m *nats.Msg) { m.Respond([]byte(m.Reply)) }) //nolint:errcheck // the request fails if lost
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // closing
	reply, err := nc.Request("echo", nil, 5*time.Second)
	if err != nil || !strings.HasPrefix(string(reply.Data), "_GEO_INBOX.r.") {
		t.Fatalf("reply subject %q, %v; want it under _GEO_INBOX.r", reply.Data, err)
	}

	// A server that is not there: Connect fails, unless in the background.
	dead := "nats://127.0.0.1:1"
	if _, err := Connect(dead, ConnConfig{Name: "dead"}); err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("connect to nothing: %v", err)
	}
	bg, err := Connect(dead, ConnConfig{Name: "later", Background: true})
	if err != nil {
		t.Fatalf("background connect to nothing: %v", err)
	}
	defer bg.Close()
	if bg.IsConnected() || !bg.Opts.RetryOnFailedConnect {
		t.Fatalf("background connection: connected %v, options %+v", bg.IsConnected(), bg.Opts)
	}
}
