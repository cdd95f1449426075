package config

import (
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
)

// HTTPTLS configures HTTPS for the client API. Certificates are read again
// when their files change, so a renewed pair takes effect without a
// restart.
type HTTPTLS struct {
	// CertFile is the PEM certificate chain the API presents. Setting it
	// (with KeyFile) turns HTTPS on.
	CertFile string `koanf:"cert_file"`
	// KeyFile is the PEM private key of CertFile. Required with CertFile.
	KeyFile string `koanf:"key_file"`
	// ClientCAFile, if set, requires every client to present a certificate
	// issued by one of these PEM CAs (mutual TLS). Needs CertFile.
	ClientCAFile string `koanf:"client_ca_file"`
}

// Enabled reports whether HTTPS is configured.
func (t HTTPTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// NATSTLS configures TLS on this region's NATS connections and, when the
// server is embedded, on that server. The same certificate serves as the
// server's and as the client certificate this region presents to its
// peers' servers.
type NATSTLS struct {
	// CAFile is the PEM CA bundle servers' certificates must chain to and,
	// for the embedded server, clients' certificates too (mutual TLS).
	CAFile string `koanf:"ca_file"`
	// CertFile is this region's PEM certificate (server and client use).
	CertFile string `koanf:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `koanf:"key_file"`
}

// Enabled reports whether any NATS TLS setting is present.
func (t NATSTLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Auth configures bearer tokens on the HTTP API.
type Auth struct {
	// Enabled requires a bearer token on every request but GET /healthz.
	// Default: true when TokensFile is set, else false.
	Enabled bool `koanf:"enabled"`
	// TokensFile lists the accepted tokens (name, role, SHA-256 of the
	// secret, optional key prefixes). It is read again when it changes, so
	// removing a line revokes that token within seconds. Required when
	// Enabled.
	TokensFile string `koanf:"tokens_file"`
}

// Metrics configures a listener that serves only /metrics, without TLS or
// authentication, for a scraper on a private network.
type Metrics struct {
	// Listen is that listener's host:port; empty (the default) serves
	// /metrics on the API listener only, where it needs the reader role
	// when auth is on.
	Listen string `koanf:"listen"`
}

// FilePathKeys are the keys whose values name files. A relative path
// written in the configuration file is relative to that file's directory
// (so a deployment folder can be moved or copied whole); from the
// environment or a flag it is relative to the working directory.
var FilePathKeys = []string{
	"http.tls.cert_file", "http.tls.key_file", "http.tls.client_ca_file",
	"auth.tokens_file",
	"nats.tls.ca_file", "nats.tls.cert_file", "nats.tls.key_file",
	"nats.creds_file", "nats.nkey_seed_file",
	"security.token_keys_file",
}

// resolveFilePaths rewrites, in a file layer's key map, every relative
// path under FilePathKeys as a path under dir.
func resolveFilePaths(m map[string]any, dir string) {
	for _, key := range FilePathKeys {
		parts := strings.Split(key, ".")
		node := m
		for _, p := range parts[:len(parts)-1] {
			next, ok := node[p].(map[string]any)
			if !ok {
				node = nil
				break
			}
			node = next
		}
		if node == nil {
			continue
		}
		leaf := parts[len(parts)-1]
		if s, ok := node[leaf].(string); ok && s != "" && !filepath.IsAbs(s) {
			node[leaf] = filepath.Join(dir, s)
		}
	}
}

// validateSecurity adds the problems of the security settings: half-set
// TLS pairs, auth without a tokens file, nkeys on some regions only or
// without this region's seed.
func (c *Config) validateSecurity(add func(key, format string, args ...any)) {
	t := c.HTTP.TLS
	if t.CertFile != "" && t.KeyFile == "" {
		add("http.tls.key_file", "required with http.tls.cert_file (the certificate's private key, PEM)")
	}
	if t.KeyFile != "" && t.CertFile == "" {
		add("http.tls.cert_file", "required with http.tls.key_file (the certificate, PEM)")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		add("http.tls.client_ca_file", "needs HTTPS: set http.tls.cert_file and http.tls.key_file too")
	}
	if c.Auth.Enabled && c.Auth.TokensFile == "" {
		add("auth.tokens_file", "required when auth.enabled is true: the file of bearer tokens (geogate init writes one)")
	}
	if !c.Auth.Enabled && c.Auth.TokensFile != "" {
		add("auth.enabled", "false conflicts with auth.tokens_file %q: remove one of them", c.Auth.TokensFile)
	}
	if c.Metrics.Listen != "" {
		if err := checkListen(c.Metrics.Listen); err != nil {
			add("metrics.listen", "%v", err)
		} else if c.Metrics.Listen == c.HTTP.Listen {
			add("metrics.listen", "%q is also http.listen: use another port, or leave metrics.listen empty", c.Metrics.Listen)
		}
	}

	n := c.NATS.TLS
	if n.CertFile != "" && n.KeyFile == "" {
		add("nats.tls.key_file", "required with nats.tls.cert_file (the certificate's private key, PEM)")
	}
	if n.KeyFile != "" && n.CertFile == "" {
		add("nats.tls.cert_file", "required with nats.tls.key_file (the certificate, PEM)")
	}
	if c.NATS.Embedded && n.Enabled() {
		// The embedded server verifies its clients (peers) against the CA.
		if n.CAFile == "" {
			add("nats.tls.ca_file", "required for the embedded server's TLS: the CA its clients' certificates must chain to")
		}
		if n.CertFile == "" && n.KeyFile == "" {
			add("nats.tls.cert_file", "required for the embedded server's TLS (with nats.tls.key_file)")
		}
	}
	if c.NATS.CredsFile != "" && c.NATS.NKeySeedFile != "" {
		add("nats.creds_file", "conflicts with nats.nkey_seed_file: a region authenticates with one of them")
	}

	var with, without []string
	for _, name := range c.writtenOrder() {
		if k := c.Regions[name].NKey; k != "" {
			with = append(with, name)
			if !nkeys.IsValidPublicUserKey(k) {
				add("regions."+name+".nkey", "%q is not an NKey user public key (\"U\" and 55 more characters, as geogate init writes)", k)
			}
		} else {
			without = append(without, name)
		}
	}
	if len(with) > 0 && len(without) > 0 {
		for _, name := range without {
			add("regions."+name+".nkey", "required: regions %s have nkeys, so every region needs one", strings.Join(with, ", "))
		}
	}
	if len(with) > 0 && c.NATS.Embedded && c.NATS.NKeySeedFile == "" {
		add("nats.nkey_seed_file", "required when the regions have nkeys: the seed of regions.%s.nkey, with which this region connects", c.Region)
	}
	if len(with) > 0 && !c.NATS.Embedded && c.NATS.NKeySeedFile == "" && c.NATS.CredsFile == "" {
		add("nats.nkey_seed_file", "required when the regions have nkeys (or nats.creds_file for an external NATS in operator mode)")
	}
}

// NATSAuth reports whether the deployment's NATS servers admit only the
// regions' users (every region has an nkey).
func (c *Config) NATSAuth() bool {
	for _, e := range c.Regions {
		if e.NKey != "" {
			return true
		}
	}
	return false
}
