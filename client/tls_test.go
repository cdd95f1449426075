package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/geogate/geogate/client"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key (PEM) signed by the CA, for a server
// on 127.0.0.1 or for a client.
func (ca *testCA) issue(t *testing.T, serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "geogate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTLSAndToken: a region behind a TLS front that requires a client
// certificate from the deployment's CA and a bearer token (as a secured
// deployment does): the client trusts the CA file, presents its
// certificate, sends its token, and refuses a redirect to plain http.
func TestTLSAndToken(t *testing.T) {
	c := startRegions(t, []string{"r1"}, "all-to-all", nil)
	region, err := url.Parse(urlOf(c, "r1"))
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	serverCert, serverKey := ca.issue(t, 2, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := ca.issue(t, 3, x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)

	proxy := httputil.NewSingleHostReverseProxy(region)
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.Header().Set("WWW-Authenticate", "Bearer")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"missing or unknown token","code":"unauthenticated"}`)) //nolint:errcheck
			return
		}
		if r.URL.Path == "/v1/kv/downgrade" {
			http.Redirect(w, r, region.String()+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	front.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	front.StartTLS()
	t.Cleanup(front.Close)

	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	certFile, keyFile := writeFile(t, dir, "client.pem", clientCert), writeFile(t, dir, "client.key", clientKey)

	app := newClient(t, []string{front.URL}, client.WithTLSFiles(caFile, certFile, keyFile), client.WithToken("s3cret"))
	if _, err := app.Put(bg, "k", 1); err != nil {
		t.Fatalf("put over TLS with token: %v", err)
	}
	if v, err := app.Get(bg, "k"); err != nil || string(v.Data) != "1" {
		t.Fatalf("get over TLS: %+v %v", v, err)
	}
	if _, err := app.Put(bg, "downgrade", 1); !errors.Is(err, client.ErrInsecureRedirect) {
		t.Fatalf("redirect from https to http: %v, want ErrInsecureRedirect", err)
	}

	// The same with a *tls.Config.
	cert, err := tls.X509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if _, err := newClient(t, []string{front.URL}, client.WithTLSConfig(cfg), client.WithToken("s3cret")).Status(bg); err != nil {
		t.Fatalf("status with a tls.Config: %v", err)
	}

	// No token: a typed 401. No client certificate, or a CA not trusted:
	// the handshake fails, and is not retried as if the region were down.
	_, err = newClient(t, []string{front.URL}, client.WithTLSFiles(caFile, certFile, keyFile)).Get(bg, "k")
	var unauth *client.UnauthenticatedError
	if !errors.As(err, &unauth) || unauth.Status != 401 {
		t.Fatalf("without a token: %v", err)
	}
	if _, err := newClient(t, []string{front.URL}, client.WithTLSFiles(caFile, "", ""), client.WithToken("s3cret")).Get(bg, "k"); err == nil {
		t.Fatal("a request without a client certificate was served")
	}
	if _, err := newClient(t, []string{front.URL}, client.WithToken("s3cret")).Get(bg, "k"); err == nil {
		t.Fatal("a server certificate from an unknown CA was trusted")
	}
	if _, err := client.New([]string{front.URL}, client.WithTLSFiles(filepath.Join(dir, "none.pem"), "", "")); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
	if _, err := client.New([]string{front.URL}, client.WithTLSFiles("", certFile, "")); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}
