package link

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// LogAsyncErrors returns the connection option that reports a NATS
// connection's asynchronous errors (a write to a server that went away, a
// slow consumer, a permissions violation) to log at warning level, with the
// connection's name and the subscription's subject when there is one.
// Without it nats.go writes them to standard error, outside the region's
// structured log. Every connection geogate opens uses it.
func LogAsyncErrors(log *slog.Logger) nats.Option {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		args := []any{"err", err}
		if nc != nil {
			args = append(args, "conn", nc.Opts.Name)
		}
		if sub != nil {
			args = append(args, "subject", sub.Subject)
		}
		log.Warn("nats connection error", args...)
	})
}

// Credentials are what a region presents on a NATS connection. The zero
// value is an open connection that receives replies under nats.go's
// default inbox.
type Credentials struct {
	// InProcess, if set, makes the connection through this server in the
	// process instead of the network (a region's own embedded server, when
	// TLS on the way there would protect nothing). TLS is then not used.
	InProcess nats.InProcessConnProvider
	// TLS, if set, is the TLS configuration of a network connection: the
	// CAs to trust and the client certificate to present.
	TLS *tls.Config
	// NKey is the public key of the region's NKey identity and Sign signs
	// the server's challenge with its seed; both or neither.
	NKey string
	Sign nats.SignatureHandler
	// CredsFile is a NATS credentials file (user JWT and seed), for a
	// server in operator mode.
	CredsFile string
	// InboxPrefix is the prefix under which replies and pulled messages
	// arrive ("": nats.go's _INBOX).
	InboxPrefix string
}

// ConnConfig describes one NATS connection geogate opens. Every connection
// is made from one (Options, Connect), so all of them reconnect forever
// every 250ms, ping every 5s and count the connection stale after 3
// unanswered pings (a peer gone without closing its socket is noticed
// within about 20s), and log their asynchronous errors (LogAsyncErrors).
type ConnConfig struct {
	// Name is the connection's name, shown by the server and in logs.
	Name string
	// Logger receives the connection's asynchronous errors; nil discards
	// them.
	Logger *slog.Logger
	// Dialer, if set, makes the network connection (the testbed's WAN
	// emulation).
	Dialer nats.CustomDialer
	// Credentials are the region's TLS, identity and inbox prefix.
	Credentials Credentials
	// Peer marks a connection to another region's server: it keeps trying
	// after the server refuses its credentials (the peer may be restarting
	// with new settings) instead of closing for good.
	Peer bool
	// Background makes Connect return at once with a connection that is
	// still being made when the server cannot be reached yet
	// (nats.RetryOnFailedConnect); without it Connect fails then.
	Background bool
	// Timeout bounds each attempt to connect (0: nats.go's 2s).
	Timeout time.Duration
}

// Options returns the nats.go options of the connection c describes.
func (c ConnConfig) Options() []nats.Option {
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		LogAsyncErrors(c.Logger),
	}
	if c.Dialer != nil {
		opts = append(opts, nats.SetCustomDialer(c.Dialer))
	}
	if c.Background {
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	if c.Timeout > 0 {
		opts = append(opts, nats.Timeout(c.Timeout))
	}
	if c.Peer {
		opts = append(opts, nats.IgnoreAuthErrorAbort())
	}
	cr := c.Credentials
	switch {
	case cr.InProcess != nil:
		opts = append(opts, nats.InProcessServer(cr.InProcess))
	case cr.TLS != nil:
		opts = append(opts, nats.Secure(cr.TLS))
	}
	if cr.NKey != "" {
		opts = append(opts, nats.Nkey(cr.NKey, cr.Sign))
	}
	if cr.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cr.CredsFile))
	}
	if cr.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cr.InboxPrefix))
	}
	return opts
}

// Connect opens the connection c describes to url (a comma-separated list
// is allowed).
func Connect(url string, c ConnConfig) (*nats.Conn, error) {
	nc, err := nats.Connect(url, c.Options()...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	return nc, nil
}
