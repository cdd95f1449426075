package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func issue(t *testing.T, ca *CA, name string, from, to time.Time, hosts ...string) Leaf {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	l, err := ca.Issue(IssueOptions{CommonName: name, Hosts: hosts, NotBefore: from, NotAfter: to})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssueAndLoadCA(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test CA", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key, _ := ca.KeyPEM()
	os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM(), 0o644) //nolint:errcheck // read back below
	os.WriteFile(filepath.Join(dir, "ca-key.pem"), key, 0o600)      //nolint:errcheck // read back below
	loaded, err := LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parse(t, issue(t, loaded, "n1", now.Add(-time.Minute), now.Add(time.Hour), "10.0.0.5", "eu.example.com").CertPEM)
	pool, err := LoadPool(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"10.0.0.5", "eu.example.com"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server name %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example.com"}); err == nil {
		t.Error("valid for a host it was not issued for")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("not a client certificate: %v", err)
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v", leaf.PublicKeyAlgorithm)
	}
	// A key that is not the CA's is refused.
	other, _ := NewCA("other", now, now.Add(time.Hour))
	okey, _ := other.KeyPEM()
	os.WriteFile(filepath.Join(dir, "other-key.pem"), okey, 0o600) //nolint:errcheck // read back below
	if _, err := LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other-key.pem")); err == nil {
		t.Error("LoadCA accepted another CA's key")
	}
}

func TestVerifyClientReasons(t *testing.T) {
	now := time.Now()
	ca, _ := NewCA("ca", now.Add(-48*time.Hour), now.Add(48*time.Hour))
	other, _ := NewCA("other", now.Add(-48*time.Hour), now.Add(48*time.Hour))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	der := func(l Leaf) [][]byte { b, _ := pem.Decode(l.CertPEM); return [][]byte{b.Bytes} }
	for _, c := range []struct {
		name   string
		raw    [][]byte
		reason string
	}{
		{"valid", der(issue(t, ca, "ok", now.Add(-time.Hour), now.Add(time.Hour))), ""},
		{"none", nil, ReasonNoCertificate},
		{"expired", der(issue(t, ca, "old", now.Add(-2*time.Hour), now.Add(-time.Hour))), ReasonExpired},
		{"not yet valid", der(issue(t, ca, "new", now.Add(time.Hour), now.Add(2*time.Hour))), ReasonNotYetValid},
		{"another CA", der(issue(t, other, "stranger", now.Add(-time.Hour), now.Add(time.Hour))), ReasonUnknownCA},
		{"garbage", [][]byte{[]byte("not a certificate")}, ReasonBadCertificate},
	} {
		reason, err := VerifyClient(c.raw, pool, now)
		if reason != c.reason || (err == nil) != (c.reason == "") {
			t.Errorf("%s: reason %q err %v, want %q", c.name, reason, err, c.reason)
		}
	}
}

// TestPairReload: a pair whose files change is served anew from the first
// use after CheckInterval; a pair caught half-written keeps the previous
// certificate.
func TestPairReload(t *testing.T) {
	now := time.Now()
	ca, _ := NewCA("ca", now.Add(-time.Hour), now.Add(48*time.Hour))
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "n.pem"), filepath.Join(dir, "n-key.pem")
	first := issue(t, ca, "first", now.Add(-time.Hour), now.Add(time.Hour))
	if err := first.WriteFiles(cf, kf); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(kf); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key written %v, want 0600", fi.Mode().Perm())
	}
	p, err := LoadPair(cf, kf, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := now
	p.now = func() time.Time { return clock }
	name := func() string { return p.Certificate().Leaf.Subject.CommonName }
	if name() != "first" {
		t.Fatal(name())
	}
	second := issue(t, ca, "second", now.Add(-time.Hour), now.Add(2*time.Hour))
	// Half written: the new certificate with the old key.
	if err := os.WriteFile(cf, second.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(CheckInterval)
	if name() != "first" {
		t.Fatalf("a mismatched pair was loaded: %s", name())
	}
	if err := os.WriteFile(kf, second.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if name() != "first" {
		t.Fatal("reloaded before CheckInterval passed")
	}
	clock = clock.Add(CheckInterval)
	if name() != "second" {
		t.Fatalf("after CheckInterval: %s, want second", name())
	}
	// A TLS server with ServerConfig serves the pair.
	cfg := ServerConfig(p, nil, nil)
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c.Leaf.Subject.CommonName != "second" {
		t.Fatalf("GetCertificate: %v %v", c, err)
	}
	if _, err := LoadPair(filepath.Join(dir, "missing.pem"), kf, nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
