package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CheckInterval is how often, at most, a Pair looks at its files to see
// whether they changed. The check happens when the certificate is used (a
// TLS handshake), so a renewed certificate is served from the first
// handshake after this interval.
const CheckInterval = time.Second

// Pair is a certificate and its key read from two PEM files, read again
// when either file changes (its size, modification time or identity, so a
// file replaced by rename is seen). A pair that fails to load (the two
// files caught between writes, a key that does not match) keeps the
// previous certificate and is retried at the next check. Safe for
// concurrent use.
type Pair struct {
	certFile, keyFile string
	log               *slog.Logger

	cert      atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64     // Unix ns of the next look at the files
	now       func() time.Time // time.Now; tests move it

	mu     sync.Mutex // serialises reloads; guards stamp
	stamp  [2]os.FileInfo
	failed bool // the last reload failed (log once per change)
}

// LoadPair reads the pair; it fails, naming the file, when either file is
// missing or the key does not match the certificate. log receives reload
// notices and failures (nil discards them).
func LoadPair(certFile, keyFile string, log *slog.Logger) (*Pair, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pair{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	st, err := p.stat()
	if err != nil {
		return nil, err
	}
	c, err := p.read()
	if err != nil {
		return nil, err
	}
	p.stamp = st
	p.cert.Store(c)
	p.nextCheck.Store(p.now().Add(CheckInterval).UnixNano())
	return p, nil
}

func (p *Pair) stat() ([2]os.FileInfo, error) {
	var st [2]os.FileInfo
	for i, f := range []string{p.certFile, p.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return st, fmt.Errorf("certificate: %w", err)
		}
		st[i] = fi
	}
	return st, nil
}

func (p *Pair) read() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %s with key %s: %w", p.certFile, p.keyFile, err)
	}
	return &c, nil
}

// Certificate returns the current certificate, first reloading the files if
// they changed and CheckInterval has passed since the last look.
func (p *Pair) Certificate() *tls.Certificate {
	now := p.now()
	if now.UnixNano() >= p.nextCheck.Load() && p.mu.TryLock() {
		p.nextCheck.Store(now.Add(CheckInterval).UnixNano())
		p.reload()
		p.mu.Unlock()
	}
	return p.cert.Load()
}

// reload reads the files again if their stamps changed. p.mu held.
func (p *Pair) reload() {
	st, err := p.stat()
	if err != nil {
		if !p.failed {
			p.log.Error("certificate files unreadable; still serving the previous certificate", "err", err)
		}
		p.failed = true
		return
	}
	if same(st[0], p.stamp[0]) && same(st[1], p.stamp[1]) {
		return
	}
	c, err := p.read()
	if err != nil {
		// Perhaps caught between the two writes: retried at the next
		// check, logged once per change.
		p.log.Error("certificate files changed but do not load; still serving the previous certificate", "err", err)
		p.stamp = st
		p.failed = true
		return
	}
	p.stamp, p.failed = st, false
	p.cert.Store(c)
	p.log.Info("certificate reloaded", "cert_file", p.certFile, "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

func same(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// GetCertificate serves the pair to a TLS server (tls.Config.GetCertificate).
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.Certificate(), nil
}

// GetClientCertificate presents the pair as a client certificate
// (tls.Config.GetClientCertificate).
func (p *Pair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return p.Certificate(), nil
}

// Reasons a peer's certificate is refused, as ServerConfig reports them
// (and as the auth failure counter labels them).
const (
	ReasonNoCertificate  = "tls_no_certificate"
	ReasonExpired        = "tls_expired"
	ReasonNotYetValid    = "tls_not_yet_valid"
	ReasonUnknownCA      = "tls_unknown_ca"
	ReasonBadCertificate = "tls_bad_certificate"
)

// ServerConfig returns the TLS configuration of a server presenting pair
// (TLS 1.2 or later; session tickets on, so clients resume sessions). With
// clientCAs, every client must present a certificate that chains to them
// and allows client authentication (mutual TLS); a refused one is reported
// to onRefused (if set) with its reason and the verification error, and the
// handshake fails.
func ServerConfig(pair *Pair, clientCAs *x509.CertPool, onRefused func(reason string, err error)) *tls.Config {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: pair.GetCertificate}
	if clientCAs == nil {
		return tc
	}
	tc.ClientAuth = tls.RequireAnyClientCert
	tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		reason, err := VerifyClient(raw, clientCAs, time.Now())
		if err != nil && onRefused != nil {
			onRefused(reason, err)
		}
		return err
	}
	return tc
}

// VerifyClient verifies a client's certificate chain (leaf first, as sent)
// against roots at now, for client authentication. It returns nil, or the
// error with its reason: ReasonNoCertificate, ReasonExpired,
// ReasonNotYetValid, ReasonUnknownCA or ReasonBadCertificate.
func VerifyClient(raw [][]byte, roots *x509.CertPool, now time.Time) (string, error) {
	if len(raw) == 0 {
		return ReasonNoCertificate, errors.New("no client certificate")
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return ReasonBadCertificate, fmt.Errorf("client certificate: %w", err)
		}
		certs = append(certs, c)
	}
	leaf := certs[0]
	switch {
	case now.After(leaf.NotAfter):
		return ReasonExpired, fmt.Errorf("client certificate %q expired at %s", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return ReasonNotYetValid, fmt.Errorf("client certificate %q is not valid before %s", leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err == nil {
		return "", nil
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return ReasonUnknownCA, fmt.Errorf("client certificate %q is not issued by this deployment's CA: %w", leaf.Subject.CommonName, err)
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) && ci.Reason == x509.Expired {
		// An intermediate outside its validity.
		return ReasonExpired, fmt.Errorf("client certificate chain of %q: %w", leaf.Subject.CommonName, err)
	}
	return ReasonBadCertificate, fmt.Errorf("client certificate %q: %w", leaf.Subject.CommonName, err)
}

// ClientConfig returns the TLS configuration of a client that trusts roots
// and, when pair is not nil, presents it as its client certificate. It
// keeps a session cache, so reconnections resume their TLS session instead
// of a full handshake.
func ClientConfig(roots *x509.CertPool, pair *Pair) *tls.Config {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	if pair != nil {
		tc.GetClientCertificate = pair.GetClientCertificate
	}
	return tc
}
