package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	nkeyA = "UBXVH2RCUSKNOTRUECXI4EMZLSQ4ANKHBCGDZLVSEFNLUSMZFAWOZ77Q"
	nkeyB = "UDNVMCP2OMCLGQTPITUWNJI6OA7Z3XV3FTWQN7JWIYOH4JU4LB62KZYO"
)

// TestSecurityRefusals: a config that turns TLS on without its key, auth on
// without a tokens file, or NATS authentication on without this region's
// seed is refused at load, naming the key.
func TestSecurityRefusals(t *testing.T) {
	two := `region: a
regions:
  a: { http: "https://127.0.0.1:7101", nats: "tls://127.0.0.1:7151", nkey: ` + nkeyA + ` }
  b: { http: "https://127.0.0.1:7102", nats: "tls://127.0.0.1:7152", nkey: ` + nkeyB + ` }
nats: { nkey_seed_file: a.nk, tls: { ca_file: ca.pem, cert_file: a.pem, key_file: a-key.pem } }
`
	tests := []struct {
		name string
		yaml string
		keys []string // refused keys; none: loads
	}{
		{"secured", two, nil},
		{"http cert without key", baseYAML + "http: {tls: {cert_file: c.pem}}\n", []string{"http.tls.key_file"}},
		{"http key without cert", baseYAML + "http: {tls: {key_file: k.pem}}\n", []string{"http.tls.cert_file"}},
		{"client CA without HTTPS", baseYAML + "http: {tls: {client_ca_file: ca.pem}}\n", []string{"http.tls.client_ca_file"}},
		{"auth on without tokens file", baseYAML + "auth: {enabled: true}\n", []string{"auth.tokens_file"}},
		{"auth off with tokens file", baseYAML + "auth: {enabled: false, tokens_file: t.yaml}\n", []string{"auth.enabled"}},
		{"tokens file alone turns auth on", baseYAML + "auth: {tokens_file: t.yaml}\n", nil},
		{"nats cert without key", baseYAML + "nats: {tls: {ca_file: ca.pem, cert_file: c.pem}}\n", []string{"nats.tls.key_file"}},
		{"embedded nats TLS without CA", baseYAML + "nats: {tls: {cert_file: c.pem, key_file: k.pem}}\n", []string{"nats.tls.ca_file"}},
		{"embedded nats TLS with only a CA", baseYAML + "nats: {tls: {ca_file: ca.pem}}\n", []string{"nats.tls.cert_file"}},
		{"external nats trusting a CA", baseYAML + "nats: {url: tls://n:4222, tls: {ca_file: ca.pem}}\n", nil},
		{"nkeys without seed", strings.Replace(two, "nkey_seed_file: a.nk, ", "", 1), []string{"nats.nkey_seed_file"}},
		{"nkey on one region only", strings.Replace(two, ", nkey: "+nkeyB, "", 1), []string{"regions.b.nkey"}},
		{"not an nkey", strings.Replace(two, nkeyB, "UNOTANNKEY", 1), []string{"regions.b.nkey"}},
		{"creds and seed", strings.Replace(two, "nkey_seed_file: a.nk,", "nkey_seed_file: a.nk, creds_file: a.creds,", 1), []string{"nats.creds_file"}},
		{"metrics on the API's address", baseYAML + "metrics: {listen: 127.0.0.1:7101}\n", []string{"metrics.listen"}},
		{"metrics not host:port", baseYAML + "metrics: {listen: nine}\n", []string{"metrics.listen"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, t.TempDir(), tt.yaml, nil, nil)
			fields, unknown := problems(err)
			if len(unknown) > 0 {
				t.Fatalf("unknown keys %v: %v", unknown, err)
			}
			slices.Sort(fields)
			if !slices.Equal(fields, tt.keys) {
				t.Fatalf("refused keys %v, want %v (%v)", fields, tt.keys, err)
			}
		})
	}
}

// TestFilePathsRelativeToConfig: file keys written relative in the file
// are relative to the file's directory; given by the environment, to the
// working directory; absolute paths stay.
func TestFilePathsRelativeToConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	yaml := baseYAML + `http: {tls: {cert_file: tls/a.pem, key_file: /abs/a-key.pem}}
auth: {tokens_file: auth/tokens.yaml}
nats: {tls: {ca_file: tls/ca.pem, cert_file: tls/a.pem, key_file: tls/a-key.pem}, nkey_seed_file: nats/a.nk}
security: {token_keys_file: secrets/token.keys}
data_dir: data/a
`
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, []string{"GEOGATE_NATS__TLS__CA_FILE=env/ca.pem"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range []struct{ key, got, want string }{
		{"http.tls.cert_file", c.HTTP.TLS.CertFile, filepath.Join(dir, "tls/a.pem")},
		{"http.tls.key_file", c.HTTP.TLS.KeyFile, "/abs/a-key.pem"},
		{"auth.tokens_file", c.Auth.TokensFile, filepath.Join(dir, "auth/tokens.yaml")},
		{"auth.enabled", map[bool]string{true: "true", false: "false"}[c.Auth.Enabled], "true"},
		{"nats.tls.ca_file", c.NATS.TLS.CAFile, "env/ca.pem"},
		{"nats.tls.key_file", c.NATS.TLS.KeyFile, filepath.Join(dir, "tls/a-key.pem")},
		{"nats.nkey_seed_file", c.NATS.NKeySeedFile, filepath.Join(dir, "nats/a.nk")},
		{"security.token_keys_file", c.Security.TokenKeysFile, filepath.Join(dir, "secrets/token.keys")},
		{"data_dir (relative to the working directory, as before)", c.DataDir, "data/a"},
	} {
		if ck.got != ck.want {
			t.Errorf("%s = %q, want %q", ck.key, ck.got, ck.want)
		}
	}
}
