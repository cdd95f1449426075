// Package deploy writes what a geogate deployment needs to run: the secret
// material (a private CA and each node's certificate, the regions' NATS
// identities, one bearer token per role, the token-signing keys) and each
// node's commented configuration file. `geogate init` is a thin command
// over Write; the testbed, the benchmarks and the tests use WriteMaterial
// and Material.Secure to run secured regions built in code.
package deploy

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/pki"
)

// Roles lists the roles init writes one token for, as their file names
// tokens/<role>.token.
var Roles = []auth.Role{auth.Admin, auth.Writer, auth.Reader}

// Paths of the material inside a deployment directory (slash-separated,
// relative to the directory).
const (
	CAFile        = "tls/ca.pem"
	CAKeyFile     = "tls/ca-key.pem"
	TokensFile    = "auth/tokens.yaml"
	TokenKeysFile = "secrets/token.keys"
)

// CertFile, KeyFile and SeedFile name a node's certificate, its key and
// its NATS NKey seed inside a deployment directory.
func CertFile(node string) string { return "tls/" + node + ".pem" }

// KeyFile names a node's private key (0600).
func KeyFile(node string) string { return "tls/" + node + "-key.pem" }

// SeedFile names a region's NATS NKey seed (0600): every node of the
// region connects with it.
func SeedFile(region string) string { return "nats/" + region + ".nk" }

// RoleTokenFile names the file holding the secret of a role's token (0600).
func RoleTokenFile(role auth.Role) string { return "tokens/" + role.String() + ".token" }

// Material is a deployment's secret material, written under Dir. Every path
// is absolute.
type Material struct {
	Dir string
	// CA is the deployment's CA (its key is in CAKeyFile).
	CA *pki.CA
	// CAFile is the CA certificate every node and client trusts.
	CAFile string
	// Nodes maps each node to its files.
	Nodes map[string]NodeFiles
	// NKeys maps each region to its public NATS identity.
	NKeys map[string]string
	// TokensFile is auth.tokens_file (hashes only).
	TokensFile string
	// Tokens maps each role to its token's secret (also in
	// tokens/<role>.token).
	Tokens map[auth.Role]string
	// TokenKeysFile is security.token_keys_file.
	TokenKeysFile string
}

// NodeFiles are one node's certificate and key, and its region's NKey
// seed.
type NodeFiles struct {
	CertFile, KeyFile, SeedFile string
}

// MaterialOptions shape WriteMaterial's certificates.
type MaterialOptions struct {
	// Regions maps each node to its region (default: the node's own
	// name, a region of one node). The nodes of a region share its NATS
	// identity.
	Regions map[string]string
	// Hosts maps each node to the hosts its certificate is valid for
	// (default 127.0.0.1 and localhost).
	Hosts map[string][]string
	// Now is the issue time (default time.Now); certificates are valid
	// from an hour before it, for Validity.
	Now time.Time
	// Validity is how long certificates are valid (default 825 days, the
	// longest browsers accept for a server certificate; the CA gets ten
	// years).
	Validity time.Duration
}

// DefaultHosts are the hosts of a node's certificate unless told others.
var DefaultHosts = []string{"127.0.0.1", "localhost"}

// WriteMaterial writes a deployment's secret material for nodes under dir
// (created if needed; existing files are overwritten): the CA, a
// certificate and key per node, an NKey seed per region, one token per role with the
// tokens file of their hashes, and a token-keys file with one fresh key.
// Secrets (keys, seeds, tokens, token keys) are written 0600, the rest
// 0644, directories 0700.
func WriteMaterial(dir string, nodes []string, o MaterialOptions) (*Material, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Validity <= 0 {
		o.Validity = 825 * 24 * time.Hour
	}
	m := &Material{Dir: dir, Nodes: map[string]NodeFiles{}, NKeys: map[string]string{}, Tokens: map[auth.Role]string{}}
	path := func(rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }
	for _, sub := range []string{"tls", "nats", "tokens", "auth", "secrets"} {
		if err := os.MkdirAll(path(sub), 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", path(sub), err)
		}
	}
	notBefore := o.Now.Add(-time.Hour)
	if m.CA, err = pki.NewCA("geogate deployment CA", notBefore, o.Now.Add(10*365*24*time.Hour)); err != nil {
		return nil, err
	}
	caKey, err := m.CA.KeyPEM()
	if err != nil {
		return nil, err
	}
	m.CAFile = path(CAFile)
	if err := write(m.CAFile, m.CA.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	if err := write(path(CAKeyFile), caKey, 0o600); err != nil {
		return nil, err
	}
	for _, node := range nodes {
		hosts := o.Hosts[node]
		if len(hosts) == 0 {
			hosts = DefaultHosts
		}
		leaf, err := m.CA.Issue(pki.IssueOptions{CommonName: node, Hosts: hosts, NotBefore: notBefore, NotAfter: o.Now.Add(o.Validity)})
		if err != nil {
			return nil, err
		}
		region := node
		if r, ok := o.Regions[node]; ok {
			region = r
		}
		f := NodeFiles{CertFile: path(CertFile(node)), KeyFile: path(KeyFile(node)), SeedFile: path(SeedFile(region))}
		if err := leaf.WriteFiles(f.CertFile, f.KeyFile); err != nil {
			return nil, err
		}
		if _, done := m.NKeys[region]; !done {
			kp, err := nkeys.CreateUser()
			if err != nil {
				return nil, fmt.Errorf("nkey of %s: %w", region, err)
			}
			seed, err := kp.Seed()
			if err != nil {
				return nil, fmt.Errorf("nkey of %s: %w", region, err)
			}
			if m.NKeys[region], err = kp.PublicKey(); err != nil {
				return nil, fmt.Errorf("nkey of %s: %w", region, err)
			}
			if err := write(f.SeedFile, append(seed, '\n'), 0o600); err != nil {
				return nil, err
			}
		}
		m.Nodes[node] = f
	}
	var tokens []auth.Token
	for _, role := range Roles {
		tok, secret, err := auth.NewToken(role.String(), role)
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, tok)
		m.Tokens[role] = secret
		if err := write(path(RoleTokenFile(role)), []byte(secret+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	m.TokensFile = path(TokensFile)
	if err := write(m.TokensFile, auth.FormatTokens(tokens), 0o644); err != nil {
		return nil, err
	}
	keys, err := TokenKeys()
	if err != nil {
		return nil, err
	}
	m.TokenKeysFile = path(TokenKeysFile)
	if err := write(m.TokenKeysFile, keys, 0o600); err != nil {
		return nil, err
	}
	return m, nil
}

// TokenKeys returns a fresh token-keys file: a comment and one key of 32
// bytes from crypto/rand, hex-encoded (64 characters).
func TokenKeys() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return []byte("# geogate token keys (security.token_keys_file): HMAC keys that authenticate context and session\n" +
		"# tokens, one per line, hex (32 bytes). The first signs; every key verifies. To rotate: add a new key\n" +
		"# as the first line on every node, wait until tokens signed with the old key no longer matter, then\n" +
		"# remove the old line. Every region of a deployment must hold the same keys.\n" +
		hex.EncodeToString(key) + "\n"), nil
}

func write(path string, data []byte, perm os.FileMode) error {
	return pki.WriteFileAtomic(path, data, perm)
}

// Secure sets every security key of c, a config of node (whose region is
// c.Region), to this material: HTTPS with the node's certificate, bearer
// tokens, TLS and NKey authentication on NATS (every region's nkey, and
// the seed of c.Region), and the token keys.
func (m *Material) Secure(c *config.Config, node string) {
	f := m.Nodes[node]
	c.HTTP.TLS = config.HTTPTLS{CertFile: f.CertFile, KeyFile: f.KeyFile}
	c.Auth = config.Auth{Enabled: true, TokensFile: m.TokensFile}
	c.NATS.TLS = config.NATSTLS{CAFile: m.CAFile, CertFile: f.CertFile, KeyFile: f.KeyFile}
	c.NATS.NKeySeedFile = f.SeedFile
	for r, e := range c.Regions {
		e.NKey = m.NKeys[r]
		c.Regions[r] = e
	}
	c.Security.TokenKeysFile = m.TokenKeysFile
}

// ClientTLS returns a TLS configuration for HTTP clients of the deployment:
// it trusts the deployment's CA, and keeps sessions for resumption.
func (m *Material) ClientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(m.CA.Cert)
	return pki.ClientConfig(pool, nil)
}
