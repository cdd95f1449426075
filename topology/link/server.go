package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startTimeout bounds how long StartServer waits for the server to accept
// connections.
const startTimeout = 10 * time.Second

// ServerOptions configures an embedded NATS server with JetStream.
type ServerOptions struct {
	// Name is the server name (shown in logs and monitoring).
	Name string
	// Host is the client listen address; empty means 127.0.0.1.
	Host string
	// Port is the client port; -1 picks a free port, 0 means NATS's default 4222.
	Port int
	// StoreDir is JetStream's storage directory (required). A server
	// restarted on the same directory recovers its streams and consumers.
	StoreDir string
	// SyncAlways makes JetStream fsync every write (sync_interval: always):
	// a stored message survives a machine crash, at the cost of one fsync
	// per publish. ModeStream publishers need it (or a replicated cluster).
	// Without it the server syncs every SyncInterval and a machine crash
	// (not a process crash) can lose the unsynced tail, which a ModeOutbox
	// publisher republishes.
	SyncAlways bool
	// SyncInterval is the period of JetStream's background fsync
	// (sync_interval) when SyncAlways is false: a machine crash loses at
	// most about this much of the stream. Zero means the server's default
	// (two minutes); with SyncAlways it is ignored. Negative is refused.
	SyncInterval time.Duration
	// MaxPayload is the largest message the server accepts (its
	// max_payload, header included); 0 means NATS's default of 1 MiB. The
	// server's per-client pending limit is raised to twice it when that is
	// larger than NATS's default of 64 MiB.
	MaxPayload int32
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger

	// TLS, if set, makes the server accept only TLS connections, with this
	// configuration (certificate, and ClientCAs to require and verify
	// client certificates: tls.RequireAndVerifyClientCert is set whenever
	// ClientCAs is).
	TLS *tls.Config
	// Users, if not empty, are the only clients the server admits: each
	// authenticates by signing the server's challenge with its NKey, and
	// may publish and subscribe only as its permissions say. An anonymous
	// client is refused.
	Users []ServerUser
	// Cluster, if set, makes the server one node of a NATS cluster (the
	// nodes of one region): JetStream is then clustered, so a stream or a
	// key-value bucket may keep replicas on several nodes and survives the
	// loss of a minority of them. Every node needs a distinct Name.
	Cluster *ClusterOptions
	// OnRefused, if set, is called (from the server's goroutines) each time
	// the server refuses a client or an operation, with a short reason:
	// RefusedTLS, RefusedAuth or RefusedPermission. The server's log line
	// says more.
	OnRefused func(reason string)
}

// ClusterOptions make an embedded server a node of a NATS cluster.
type ClusterOptions struct {
	// Name is the cluster's name (the region's), the same on every node.
	Name string
	// Listen is the host:port the node takes routes from its peers on.
	Listen string
	// Routes are the other nodes' route URLs, nats-route://host:port (the
	// node's own may be listed too: it is skipped).
	Routes []string
	// TLS, if set, secures the routes: the node presents its certificate
	// and requires and verifies its peers' (ClientCAs).
	TLS *tls.Config
	// Secret, if set, is a password every node of the cluster knows and
	// presents on its routes (user Name): a server of the same CA that
	// lacks it (another region's) cannot join.
	Secret string
}

// Reasons passed to ServerOptions.OnRefused.
const (
	// RefusedTLS: a TLS handshake failed (no client certificate, one from
	// another CA, expired or not yet valid, or a plain-text client).
	RefusedTLS = "nats_tls"
	// RefusedAuth: a client without valid credentials (anonymous, unknown
	// NKey, bad signature).
	RefusedAuth = "nats_auth"
	// RefusedPermission: an authenticated client published or subscribed
	// outside its permissions.
	RefusedPermission = "nats_permission"
)

// ServerUser is one NKey user of an embedded server and its permissions.
type ServerUser struct {
	// NKey is the user's public NKey ("U...").
	NKey string
	// PublishAllow, PublishDeny and SubscribeAllow are subject lists
	// (wildcards allowed); a subject not allowed is refused, and a denied
	// one is refused even if allowed.
	PublishAllow, PublishDeny, SubscribeAllow []string
}

// Server is an embedded NATS server with JetStream enabled.
type Server struct {
	ns *server.Server
	// opts are the options it was started (or last reloaded) with.
	mu   sync.Mutex
	opts *server.Options
}

// StartServer starts an embedded NATS server with JetStream and returns once
// it accepts client connections (at most 10s). It fails, with the server's
// own reason, when the port is taken, the store directory is unusable or
// JetStream cannot start; nothing is left running on failure.
func StartServer(opts ServerOptions) (*Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("start nats server: store dir is required")
	}
	if opts.SyncInterval < 0 {
		return nil, fmt.Errorf("start nats server: negative sync interval %s", opts.SyncInterval)
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sopts := &server.Options{
		ServerName: opts.Name,
		Host:       host,
		Port:       opts.Port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		SyncAlways: opts.SyncAlways,
		NoSigs:     true,
		// Dedicated to one gateway; keep the monitoring and cluster ports off.
		HTTPPort:   0,
		MaxPayload: opts.MaxPayload,
	}
	if pending := 2 * int64(opts.MaxPayload); pending > 64<<20 {
		sopts.MaxPending = pending
	}
	if opts.SyncInterval > 0 && !opts.SyncAlways {
		sopts.SyncInterval = opts.SyncInterval
	}
	if opts.TLS != nil {
		tc := opts.TLS.Clone()
		if tc.ClientCAs != nil {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
			sopts.TLSVerify = true
		}
		// A handshake across a WAN takes a few round trips: allow 5s
		// (NATS's default is 2s); authentication may take 1s more.
		sopts.TLS, sopts.TLSConfig, sopts.TLSTimeout = true, tc, 5
	}
	if c := opts.Cluster; c != nil {
		if opts.Name == "" || c.Name == "" {
			return nil, errors.New("start nats server: a cluster node needs a server name and a cluster name")
		}
		host, port, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("start nats server %q: cluster listen: %w", opts.Name, err)
		}
		sopts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port, NoAdvertise: true}
		if c.Secret != "" {
			sopts.Cluster.Username, sopts.Cluster.Password = c.Name, c.Secret
		}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("start nats server %q: route %q is not a URL like nats-route://host:port", opts.Name, r)
			}
			if c.Secret != "" {
				u.User = url.UserPassword(c.Name, c.Secret)
			}
			sopts.Routes = append(sopts.Routes, u)
		}
		if c.TLS != nil {
			tc := c.TLS.Clone()
			tc.ClientAuth = tls.RequireAndVerifyClientCert
			sopts.Cluster.TLSConfig, sopts.Cluster.TLSTimeout = tc, 5
		}
	}
	sopts.Nkeys = nkeyUsers(opts.Users)
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("start nats server %q: %w", opts.Name, err)
	}
	sl := &serverLogger{log: logger.With("component", "nats-server"), fatal: make(chan string, 1), refused: opts.OnRefused}
	ns.SetLoggerV2(sl, logger.Enabled(context.Background(), slog.LevelDebug), false, false)
	ns.Start()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case msg := <-sl.fatal:
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, fmt.Errorf("start nats server %q on %s:%d: %s", opts.Name, host, opts.Port, msg)
		default:
		}
		if ns.ReadyForConnections(50 * time.Millisecond) {
			if !ns.JetStreamEnabled() {
				ns.Shutdown()
				ns.WaitForShutdown()
				return nil, fmt.Errorf("start nats server %q: jetstream not enabled", opts.Name)
			}
			return &Server{ns: ns, opts: sopts}, nil
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, fmt.Errorf("start nats server %q on %s:%d: not ready after %s", opts.Name, host, opts.Port, startTimeout)
		}
	}
}

// splitHostPort parses host:port; port 0 picks a free port.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}

// ClusterAddr returns the host:port the server takes routes on ("" when it
// is not a cluster node).
func (s *Server) ClusterAddr() string {
	if a := s.ns.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Routes returns how many routes to other cluster nodes the server has
// now (0 when it is not a cluster node).
func (s *Server) Routes() int { return s.ns.NumRoutes() }

// nkeyUsers converts users to the server's NKey users.
func nkeyUsers(users []ServerUser) []*server.NkeyUser {
	var out []*server.NkeyUser
	for _, u := range users {
		out = append(out, &server.NkeyUser{Nkey: u.NKey, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: u.PublishAllow, Deny: u.PublishDeny},
			Subscribe: &server.SubjectPermission{Allow: u.SubscribeAllow},
		}})
	}
	return out
}

// SetUsers replaces the server's users and their permissions while it
// runs (a region added to or removed from the topology), through the
// server's configuration reload: clients of a removed user are
// disconnected, and every client's permissions follow the new list. A
// server started without users (open) cannot be given some this way, nor
// the reverse: that needs a restart.
func (s *Server) SetUsers(users []ServerUser) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if (len(s.opts.Nkeys) == 0) != (len(users) == 0) {
		return errors.New("set users: turning authentication on or off needs a restart")
	}
	next := s.opts.Clone()
	next.Nkeys = nkeyUsers(users)
	if err := s.ns.ReloadOptions(next); err != nil {
		return fmt.Errorf("set users: %w", err)
	}
	s.opts = next
	return nil
}

// ClientURL returns the URL clients connect to, e.g. nats://127.0.0.1:4222.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Port returns the client port the server listens on (useful after Port -1).
func (s *Server) Port() int {
	if a, ok := s.ns.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// InProcessConn returns a connection to the server that does not leave the
// process (a net.Pipe; nats.InProcessServer takes the Server). Such a client
// still authenticates as any client, but needs no TLS: nothing it sends
// crosses a network.
func (s *Server) InProcessConn() (net.Conn, error) { return s.ns.InProcessConn() }

// Shutdown stops the server and returns once it has shut down; JetStream
// state is flushed to StoreDir. It is safe to call more than once.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// serverLogger adapts nats-server's Logger to slog and reports the first
// fatal message (a listen failure, JetStream failing to start) to
// StartServer instead of exiting the process.
type serverLogger struct {
	log     *slog.Logger
	once    sync.Once
	fatal   chan string
	refused func(reason string)
}

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if quiet, warn := routeRetry(msg); quiet {
		if warn {
			l.log.Warn(msg)
		} else {
			l.log.Debug(msg)
		}
		return
	}
	l.log.Error(msg)
	if l.refused != nil {
		if reason := refusal(msg); reason != "" {
			l.refused(reason)
		}
	}
}

// routeRetry reports whether msg is a retry of the connection to another
// server of the region's cluster (a node that is down: expected, retried
// every second) and, if so, whether this attempt is worth a warning: the
// first and every 60th.
func routeRetry(msg string) (quiet, warn bool) {
	const mark = "Error trying to connect to route (attempt "
	i := strings.Index(msg, mark)
	if i < 0 {
		return false, false
	}
	rest := msg[i+len(mark):]
	n, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, ')'), 0)])
	return true, err != nil || n == 1 || n%60 == 0
}

// refusal classifies a server error line as a refused client or
// operation, or "".
func refusal(msg string) string {
	switch {
	case strings.Contains(msg, "TLS handshake error"):
		return RefusedTLS
	case strings.Contains(msg, server.ErrAuthentication.Error()):
		return RefusedAuth
	case strings.Contains(msg, "Publish Violation"), strings.Contains(msg, "Subscription Violation"):
		return RefusedPermission
	}
	return ""
}
func (l *serverLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Tracef(string, ...any)          {}
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	l.once.Do(func() { l.fatal <- msg })
}
