package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/pki"
	"github.com/geogate/geogate/topology"
	"github.com/geogate/geogate/topology/link"
)

// security is a node's TLS material, NATS identity and HTTP guard, read at
// New from the files the config names (so a missing or bad file stops the
// region before it touches data), and its optional metrics listener. The
// zero parts mean "off": plain HTTP, no auth, plain NATS, no credentials.
type security struct {
	log      *slog.Logger
	failures *auth.Failures

	guard   *auth.Guard // nil: no bearer tokens
	httpTLS *tls.Config // nil: plain HTTP

	natsClientTLS *tls.Config // nil: no TLS on NATS connections
	// peerRoots are the CAs this region trusts when it calls another
	// region's HTTP API (the web console's deployment view): the
	// deployment's CA (nats.tls.ca_file, else http.tls.client_ca_file);
	// nil: the system's.
	peerRoots     *x509.CertPool
	natsServerTLS *tls.Config // nil: the embedded server takes plain connections
	// natsClusterTLS secures the routes between a region's nodes' servers
	// (nil: plain routes, or a region of one node).
	natsClusterTLS *tls.Config
	ownServerName  string // TLS name of this region's own server
	nkey           nkeys.KeyPair
	nkeyPub        string
	credsFile      string

	metricsLn  net.Listener
	metricsSrv *http.Server
}

// loadSecurity reads every file the security keys name. Each error names
// its key.
func loadSecurity(cfg *config.Config, logger *slog.Logger) (*security, error) {
	s := &security{log: logger.With("component", "security"), failures: auth.NewFailures()}
	keyErr := func(key string, err error) error { return fmt.Errorf("%s: %w", key, err) }

	if t := cfg.HTTP.TLS; t.CertFile != "" {
		pair, err := pki.LoadPair(t.CertFile, t.KeyFile, s.log.With("listener", "http"))
		if err != nil {
			return nil, keyErr("http.tls.cert_file", err)
		}
		var clientCAs *x509.CertPool
		if t.ClientCAFile != "" {
			if clientCAs, err = pki.LoadPool(t.ClientCAFile); err != nil {
				return nil, keyErr("http.tls.client_ca_file", err)
			}
		}
		s.peerRoots = clientCAs
		s.httpTLS = pki.ServerConfig(pair, clientCAs, func(reason string, err error) {
			s.failures.Inc(reason)
			s.log.Warn("client certificate refused", "reason", reason, "err", err)
		})
	}
	if cfg.Auth.Enabled {
		g, err := auth.NewGuard(cfg.Auth.TokensFile, s.failures, s.log)
		if err != nil {
			return nil, keyErr("auth.tokens_file", err)
		}
		s.guard = g
	}

	if t := cfg.NATS.TLS; t.Enabled() {
		var roots *x509.CertPool
		var pair *pki.Pair
		var err error
		if t.CAFile != "" {
			if roots, err = pki.LoadPool(t.CAFile); err != nil {
				return nil, keyErr("nats.tls.ca_file", err)
			}
		}
		if t.CertFile != "" {
			if pair, err = pki.LoadPair(t.CertFile, t.KeyFile, s.log.With("listener", "nats")); err != nil {
				return nil, keyErr("nats.tls.cert_file", err)
			}
		}
		s.natsClientTLS = pki.ClientConfig(roots, pair)
		if roots != nil {
			s.peerRoots = roots
		}
		if cfg.NATS.Embedded {
			s.natsServerTLS = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: pair.GetCertificate, ClientCAs: roots}
			if cfg.Clustered() {
				// The routes between the region's nodes: each node both
				// takes them (server) and makes them (client) with its
				// certificate, and requires the other end's.
				s.natsClusterTLS = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: pair.GetCertificate,
					GetClientCertificate: pair.GetClientCertificate, ClientCAs: roots, RootCAs: roots}
			}
		}
		own := cfg.Regions[cfg.Region].NATS
		if me, ok := cfg.Nodes[cfg.Node]; ok && me.NATS != "" {
			own = me.NATS
		}
		if u, err := url.Parse(strings.Split(own, ",")[0]); err == nil {
			s.ownServerName = u.Hostname()
		}
	}
	if f := cfg.NATS.NKeySeedFile; f != "" {
		seed, err := os.ReadFile(f)
		if err != nil {
			return nil, keyErr("nats.nkey_seed_file", err)
		}
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
		if err != nil {
			return nil, keyErr("nats.nkey_seed_file", fmt.Errorf("%s: not an NKey seed: %w", f, err))
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, keyErr("nats.nkey_seed_file", err)
		}
		if want := cfg.Regions[cfg.Region].NKey; want != "" && pub != want {
			return nil, keyErr("nats.nkey_seed_file", fmt.Errorf("%s is the seed of %s, not of regions.%s.nkey %s", f, pub, cfg.Region, want))
		}
		s.nkey, s.nkeyPub = kp, pub
	}
	s.credsFile = cfg.NATS.CredsFile

	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return nil, keyErr("metrics.listen", err)
		}
		s.metricsLn = ln
	}
	return s, nil
}

// natsNames are the names the running system gives to what the topology
// plan describes, for topology.Plan.Grants.
func natsNames() topology.Names {
	return topology.Names{
		Stream: link.StreamName, StreamSubjects: link.StreamSubjects, Consumer: link.ConsumerName,
		Heartbeat: link.HeartbeatSubject, Forward: forwardSubject, Clock: clockSubject, Inbox: inboxPrefix,
		Lifecycle: lifecycleSubject,
	}
}

// NATSGrants returns what each region may do on the NATS server of
// cfg.Region, derived from the deployment's topology plan: the permissions
// an embedded server enforces, and the ones an operator of an external
// NATS server must give the regions' users (geogate permissions prints
// them). cfg must be valid.
func NATSGrants(cfg *config.Config) ([]topology.Grant, error) {
	plan, err := cfg.Plan()
	if err != nil {
		return nil, err
	}
	return plan.Grants(cfg.Region, natsNames()), nil
}

// natsUsers returns the users of this region's embedded server, with the
// permissions the plan grants each region there, or nil when the regions
// have no nkeys (an open server).
func natsUsers(cfg *config.Config, plan *topology.Plan) []link.ServerUser {
	if !cfg.NATSAuth() {
		return nil
	}
	var users []link.ServerUser
	for _, g := range plan.Grants(cfg.Region, natsNames()) {
		users = append(users, link.ServerUser{
			NKey: cfg.Regions[g.User].NKey, PublishAllow: g.PublishAllow, PublishDeny: g.PublishDeny, SubscribeAllow: g.SubscribeAllow,
		})
	}
	return users
}

// natsServerOptions adds this region's TLS, users and refusal counting to
// its embedded server's options.
func (n *Node) natsServerOptions(o link.ServerOptions) link.ServerOptions {
	o.TLS = n.sec.natsServerTLS
	o.Users = natsUsers(n.cfg, n.plan)
	o.OnRefused = n.sec.failures.Inc
	return o
}

// natsConn describes one of this region's NATS connections, named name:
// to its own server (peer "") or to peer's. Each carries the region's
// credentials and its inbox prefix (inboxPrefix): replies and deliveries
// arrive under it, where on a peer's server no other region may read, and
// on its own server nothing of it lands on the default _INBOX.> that peers
// may read. A connection to a peer's server goes through the node's
// Dialer when it has one, and keeps trying when its credentials are
// refused (the peer may be restarting with new settings).
func (n *Node) natsConn(name, peer string) link.ConnConfig {
	s := n.sec
	c := link.ConnConfig{
		Name:   name,
		Logger: n.log,
		Peer:   peer != "",
		Credentials: link.Credentials{
			TLS: s.natsClientTLS, CredsFile: s.credsFile, InboxPrefix: inboxPrefix(n.cfg.Region),
		},
	}
	if s.nkey != nil {
		c.Credentials.NKey, c.Credentials.Sign = s.nkeyPub, s.nkey.Sign
	}
	switch {
	case peer != "":
		c.Logger = n.log.With("peer", peer)
		if n.opts.Dialer != nil {
			c.Dialer = n.opts.Dialer(peer)
		}
	case n.ownInProcess():
		// This region's own connections to its embedded server stay in
		// the process: TLS there would protect nothing, and cost.
		c.Credentials.InProcess, c.Credentials.TLS = n.nats, nil
	case c.Credentials.TLS != nil && s.ownServerName != "":
		c.Credentials.TLS = c.Credentials.TLS.Clone()
		c.Credentials.TLS.ServerName = s.ownServerName
	}
	return c
}

// ownInProcess reports whether this region's own connections reach its
// embedded server in the process (a secured embedded server): TLS on them
// would protect nothing, and cost.
func (n *Node) ownInProcess() bool { return n.nats != nil && n.sec.natsServerTLS != nil }

// ownNATSURL is the URL of this region's own connection: its server's, or
// for an in-process connection the same address without TLS (the scheme
// tls:// would make the client start a TLS handshake on the pipe).
func (n *Node) ownNATSURL() string {
	if n.ownInProcess() {
		return strings.Replace(n.natsURL, "tls://", "nats://", 1)
	}
	return n.natsURL
}

// secureHandler puts the bearer-token guard in front of h when auth is on.
func (s *security) secureHandler(h http.Handler) http.Handler {
	if s.guard == nil {
		return h
	}
	return s.guard.Wrap(h)
}

// secureListener serves TLS on ln when HTTPS is on.
func (s *security) secureListener(ln net.Listener) net.Listener {
	if s.httpTLS == nil {
		return ln
	}
	return tls.NewListener(ln, s.httpTLS)
}

// scheme is the API's URL scheme.
func (s *security) scheme() string {
	if s.httpTLS != nil {
		return "https"
	}
	return "http"
}

// errorLog is the HTTP server's error log: to logger at warn level, with
// failed TLS handshakes counted (reason tls_handshake) unless the client
// certificate check already counted them, or the client closed before
// saying anything (EOF: a port probe, not a credential).
func (s *security) errorLog(logger *slog.Logger) *log.Logger {
	return log.New(handshakeCounter{s: s, next: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}, "", 0)
}

type handshakeCounter struct {
	s    *security
	next *log.Logger
}

func (h handshakeCounter) Write(p []byte) (int, error) {
	line := string(p)
	if strings.Contains(line, "TLS handshake error") && !strings.Contains(line, "client certificate") && !strings.HasSuffix(strings.TrimSpace(line), "EOF") {
		h.s.failures.Inc("tls_handshake")
	}
	h.next.Print(strings.TrimSuffix(line, "\n"))
	return len(p), nil
}

// serveMetrics serves /metrics alone on metrics.listen, if set.
func (s *security) serveMetrics(h http.Handler, logger *slog.Logger) {
	if s.metricsLn == nil {
		return
	}
	// The API's /metrics route (routes.go), alone: nothing else answers
	// on this listener.
	only := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			writeError(w, errorf(http.StatusNotFound, "not_found", "this listener (metrics.listen) serves only /metrics"))
			return
		}
		h.ServeHTTP(w, r)
	})
	s.metricsSrv = &http.Server{Handler: only, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	go func() {
		if err := s.metricsSrv.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics listener stopped", "err", err)
		}
	}()
}

// close stops the metrics listener. Idempotent.
func (s *security) close() {
	if s == nil {
		return
	}
	if s.metricsSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.metricsSrv.Shutdown(ctx) //nolint:errcheck // best effort
		cancel()
	}
	if s.metricsLn != nil {
		s.metricsLn.Close()
	}
}
