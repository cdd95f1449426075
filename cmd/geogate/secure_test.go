package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/gateway/pki"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/topology/link"
)

// The polls of this package's tests (package wait).
var eventually = wait.For

// syncBuffer is a bytes.Buffer safe to write from a child's output copier
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeBase returns a base port P such that P..P+99 look free (init's
// deployment uses ports in that range). P is below the kernel's range of
// ephemeral ports, so that no outgoing connection or listener on port 0
// (other tests run beside this one) takes a port of the range while a
// region restarts.
func freeBase(t *testing.T) int {
	t.Helper()
	lo := 32768 // Linux's default ip_local_port_range starts here
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				lo = v
			}
		}
	}
	from, span := 10000, lo-deploy.PortSpan-10000
	if span < 1000 { // an unusual range: anywhere, as before
		from, span = 20000, 40000
	}
	for range 50 {
		base := from + rand.IntN(span)
		ok := true
		for p := base; p < base+deploy.PortSpan && ok; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free range of 100 ports")
	return 0
}

// runGeogate runs the binary's main in a child process and returns its
// stdout, stderr and error.
func runGeogate(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := geogate(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// initLine is one "node <node> <region> <url> <config-path>" line.
var initLine = regexp.MustCompile(`^node (\S+) (\S+) (https?://\S+) (\S+)$`)

type initNode struct{ name, region, url, config string }

func initDeployment(t *testing.T, dir string, args ...string) []initNode {
	t.Helper()
	stdout, stderr, err := runGeogate(t, append([]string{"init", dir}, args...)...)
	if err != nil {
		t.Fatalf("init: %v: %s", err, stderr)
	}
	var nodes []initNode
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		m := initLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("init printed %q, want `node <node> <region> <url> <config-path>`", line)
		}
		nodes = append(nodes, initNode{m[1], m[2], m[3], m[4]})
	}
	return nodes
}

// startNode runs `geogate serve --config path` from another working
// directory and waits for its "region" line.
func startNode(t *testing.T, path string, extra ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := geogate(append([]string{"serve", "--config", path}, extra...)...)
	cmd.Dir = t.TempDir()
	logs := &syncBuffer{}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck // killed
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		if !ok || !strings.HasPrefix(l, "region ") {
			rest := []string{l}
			for l := range line { // until it ends: then its stdout and stderr are whole
				rest = append(rest, l)
			}
			cmd.Wait() //nolint:errcheck // reporting what it printed
			t.Fatalf("serve printed %q; stderr: %s", rest, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve not up in 30s; stderr: %s", logs)
	}
	return cmd, logs
}

// httpsClient is an HTTPS client of a deployment: it trusts its CA and sends a
// token.
type httpsClient struct {
	http  *http.Client
	token string
}

func newClient(t *testing.T, caFile string, cert *tls.Certificate) *http.Client {
	t.Helper()
	pool, err := pki.LoadPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	tc := pki.ClientConfig(pool, nil)
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func readToken(t *testing.T, dir string, role auth.Role) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, deploy.RoleTokenFile(role)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(b), "\n") != 1 {
		t.Fatalf("%s is not one line: %q", deploy.RoleTokenFile(role), b)
	}
	return strings.TrimSpace(string(b))
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (c httpsClient) do(t *testing.T, method, u string, body string, header ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 500 {
		t.Fatalf("%s %s: %d %s (a 5xx)", method, u, resp.StatusCode, b)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

func (r reply) code(t *testing.T) string {
	t.Helper()
	var e struct{ Code, Error string }
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error: %v", r.body, err)
	}
	return e.Code
}

// metric returns the value of a Prometheus sample line starting with name.
func metric(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

// TestSecuredDeployment runs `geogate init` and `geogate serve` for two
// regions as separate processes and checks the security contract from
// outside: the files init writes, HTTPS only, 401 and 403 by role, an open
// /healthz, metrics for readers, revocation by editing the tokens file,
// replication between secured regions, and NATS servers that refuse
// anonymous clients and never let a region publish into a peer's stream.
func TestSecuredDeployment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deploy")
	base := freeBase(t)
	nodes := initDeployment(t, dir, "--regions", "us-east,eu-west", "--base-port", strconv.Itoa(base))

	t.Run("init", func(t *testing.T) {
		if len(nodes) != 2 || nodes[0].name != "us-east" || nodes[1].region != "eu-west" {
			t.Fatalf("nodes %+v", nodes)
		}
		for _, n := range nodes {
			u, err := url.Parse(n.url)
			if err != nil || u.Scheme != "https" {
				t.Fatalf("url %q", n.url)
			}
			if p, _ := strconv.Atoi(u.Port()); p < base || p > base+99 {
				t.Errorf("port %d outside %d..%d", p, base, base+99)
			}
			if n.config != filepath.Join(dir, n.name+".yaml") {
				t.Errorf("config path %q", n.config)
			}
			b, err := os.ReadFile(n.config)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range regexp.MustCompile(`:(\d+)`).FindAllStringSubmatch(string(b), -1) {
				if p, _ := strconv.Atoi(m[1]); p != 9100 && (p < base || p > base+99) {
					t.Errorf("%s uses port %d outside %d..%d", n.config, p, base, base+99)
				}
			}
		}
		secret := func(rel string) {
			fi, err := os.Stat(filepath.Join(dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", rel, fi.Mode().Perm())
			}
		}
		for _, f := range []string{"tls/us-east-key.pem", "tls/eu-west-key.pem", "tls/ca-key.pem", "nats/us-east.nk", "tokens/admin.token", "tokens/writer.token", "tokens/reader.token", "secrets/token.keys"} {
			secret(f)
		}
		for _, f := range []string{"tls/ca.pem", "tls/us-east.pem", "tls/eu-west.pem"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Error(err)
			}
		}
		keys, _ := os.ReadFile(filepath.Join(dir, "secrets/token.keys"))
		var hexKeys []string
		for _, l := range strings.Split(string(keys), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				hexKeys = append(hexKeys, l)
			}
		}
		if raw, err := hex.DecodeString(strings.Join(hexKeys, "")); len(hexKeys) != 1 || err != nil || len(raw) != 32 {
			t.Errorf("token.keys holds %q, want one 64-hex-digit key", hexKeys)
		}
		for _, n := range nodes {
			if b, _ := os.ReadFile(n.config); !strings.Contains(string(b), "token_keys_file: secrets/token.keys") {
				t.Errorf("%s does not set security.token_keys_file", n.config)
			}
		}
		// A non-empty directory and more nodes than a region takes are refused.
		if _, stderr, err := runGeogate(t, "init", dir, "--regions", "a"); err == nil || !strings.Contains(stderr, "not empty") {
			t.Errorf("init into a non-empty directory: %v %q", err, stderr)
		}
		if _, stderr, err := runGeogate(t, "init", filepath.Join(t.TempDir(), "x"), "--regions", "a,b", "--nodes", "10"); err == nil || !strings.Contains(stderr, "--nodes 10") {
			t.Errorf("init --nodes 10: %v %q", err, stderr)
		}
	})

	// Keys under home/ live in us-east: eu-west forwards their writes over
	// the secured NATS link, with the credentials init wrote.
	for _, n := range nodes {
		appendHomeRules(t, n.config)
	}
	_, usLogs := startNode(t, nodes[0].config)
	_, euLogs := startNode(t, nodes[1].config)
	caFile := filepath.Join(dir, deploy.CAFile)
	hc := newClient(t, caFile, nil)
	anon := httpsClient{http: hc}
	reader := httpsClient{http: hc, token: readToken(t, dir, auth.Reader)}
	writer := httpsClient{http: hc, token: readToken(t, dir, auth.Writer)}
	admin := httpsClient{http: hc, token: readToken(t, dir, auth.Admin)}
	usURL, euURL := nodes[0].url, nodes[1].url

	t.Run("http", func(t *testing.T) {
		if r := anon.do(t, "GET", usURL+"/healthz", ""); r.status != 200 {
			t.Errorf("/healthz without a token: %d", r.status)
		}
		for _, c := range []struct {
			name   string
			header []string
		}{
			{"no token", nil},
			{"garbage", []string{"Authorization", "Bearer !!garbage!!"}},
			{"basic", []string{"Authorization", "Basic dXNlcjpwYXNz"}},
			{"unknown", []string{"Authorization", "Bearer ggt_definitelynotatoken"}},
		} {
			r := anon.do(t, "GET", usURL+"/v1/kv/k", "", c.header...)
			if r.status != 401 || r.code(t) != "unauthenticated" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: %d %s %q", c.name, r.status, r.body, r.header.Get("WWW-Authenticate"))
			}
		}
		// A token of another deployment.
		other := filepath.Join(t.TempDir(), "other")
		initDeployment(t, other, "--regions", "us-east", "--base-port", strconv.Itoa(base))
		stranger := httpsClient{http: hc, token: readToken(t, other, auth.Admin)}
		if r := stranger.do(t, "GET", usURL+"/v1/status", ""); r.status != 401 || r.code(t) != "unauthenticated" {
			t.Errorf("another deployment's admin token: %d %s", r.status, r.body)
		}
		// Roles.
		if r := reader.do(t, "PUT", usURL+"/v1/kv/k", `{"a":1}`); r.status != 403 || r.code(t) != "forbidden" {
			t.Errorf("reader PUT: %d %s", r.status, r.body)
		}
		if r := reader.do(t, "DELETE", usURL+"/v1/kv/k", ""); r.status != 403 {
			t.Errorf("reader DELETE: %d", r.status)
		}
		if r := writer.do(t, "PUT", usURL+"/v1/kv/k", `{"a":1}`); r.status != 200 {
			t.Fatalf("writer PUT: %d %s", r.status, r.body)
		}
		for _, path := range []string{"/v1/kv/k", "/v1/kv?prefix=k", "/v1/status", "/v1/conflicts", "/metrics"} {
			if r := reader.do(t, "GET", usURL+path, ""); r.status != 200 {
				t.Errorf("reader GET %s: %d %s", path, r.status, r.body)
			}
		}
		if r := anon.do(t, "GET", usURL+"/metrics", ""); r.status != 401 {
			t.Errorf("/metrics without a token: %d", r.status)
		}
		if r := writer.do(t, "POST", euURL+"/v1/admin/links/us-east/pause", ""); r.status != 403 || r.code(t) != "forbidden" {
			t.Errorf("writer pause: %d %s", r.status, r.body)
		}
		for _, action := range []string{"pause", "resume"} {
			if r := admin.do(t, "POST", euURL+"/v1/admin/links/us-east/"+action, ""); r.status != 200 {
				t.Errorf("admin %s: %d %s", action, r.status, r.body)
			}
		}
		// Replication between the secured regions.
		eventually(t, 15*time.Second, "k replicated to eu-west", func() bool {
			return reader.do(t, "GET", euURL+"/v1/kv/k", "").status == 200
		})
		// Plain HTTP and a client that does not trust the CA get no answer.
		if resp, err := http.Get("http://" + strings.TrimPrefix(usURL, "https://") + "/healthz"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Errorf("plain HTTP to the HTTPS port: %d %s", resp.StatusCode, b)
			}
		}
		if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(usURL + "/healthz"); err == nil {
			t.Error("a client without the deployment's CA connected")
		}
		// Every refusal is counted by reason and logged.
		m := reader.do(t, "GET", usURL+"/metrics", "")
		for _, reason := range []string{auth.ReasonMissing, auth.ReasonMalformed, auth.ReasonUnknown, auth.ReasonRole} {
			if v := metric(string(m.body), `geogate_auth_failures_total{reason="`+reason+`"}`); v < 1 {
				t.Errorf("geogate_auth_failures_total{reason=%q} = %v", reason, v)
			}
			if !strings.Contains(usLogs.String()+euLogs.String(), "reason="+reason) {
				t.Errorf("no log line with reason=%s", reason)
			}
		}
		eventually(t, 5*time.Second, "failed TLS handshakes counted", func() bool {
			m := reader.do(t, "GET", usURL+"/metrics", "")
			return metric(string(m.body), `geogate_auth_failures_total{reason="tls_handshake"}`) >= 1
		})
	})

	t.Run("home", func(t *testing.T) {
		checkHomeForwarded(t, writer, reader, euURL, usURL)
		if r := reader.do(t, "PUT", euURL+"/v1/kv/home/2", `{"v":2}`); r.status != 403 {
			t.Errorf("reader's homed PUT at eu-west: %d %s, want 403 before any forwarding", r.status, r.body)
		}
	})

	t.Run("nats", func(t *testing.T) {
		euNATS := fmt.Sprintf("tls://127.0.0.1:%d", base+deploy.PortSpan/2+1)
		pool, _ := pki.LoadPool(caFile)
		pair, err := pki.LoadPair(filepath.Join(dir, deploy.CertFile("us-east")), filepath.Join(dir, deploy.KeyFile("us-east")), nil)
		if err != nil {
			t.Fatal(err)
		}
		// Anonymous, even with a valid certificate: refused.
		if nc, err := nats.Connect(euNATS, nats.Secure(pki.ClientConfig(pool, pair)), nats.Timeout(3*time.Second)); err == nil {
			nc.Close()
			t.Fatal("an anonymous client connected to eu-west's NATS")
		} else if !strings.Contains(err.Error(), "Authorization Violation") {
			t.Fatalf("anonymous client: %v", err)
		}
		// us-east's own credentials on eu-west's server.
		seed, _ := os.ReadFile(filepath.Join(dir, deploy.SeedFile("us-east")))
		kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		violations := make(chan error, 16)
		nc, err := nats.Connect(euNATS, nats.Secure(pki.ClientConfig(pool, pair)), nats.Nkey(pub, kp.Sign),
			nats.CustomInboxPrefix("_GEO_INBOX.us-east"),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
		if err != nil {
			t.Fatalf("us-east's credentials on eu-west's server: %v", err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		forged := link.Subject("eu-west", "eu-west")
		if _, err := js.Publish(ctx, forged, []byte("forged")); err == nil {
			t.Fatal("us-east published into eu-west's stream")
		}
		select {
		case err := <-violations:
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), forged) {
				t.Fatalf("want a permissions violation on %s, got %v", forged, err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no permissions violation reported")
		}
		if err := js.DeleteStream(ctx, link.StreamName("eu-west")); err == nil {
			t.Fatal("us-east deleted eu-west's stream")
		}
		// Reading is allowed, also to a tool with the default inbox.
		tool, err := nats.Connect(euNATS, nats.Secure(pki.ClientConfig(pool, pair)), nats.Nkey(pub, kp.Sign))
		if err != nil {
			t.Fatal(err)
		}
		defer tool.Close()
		tjs, _ := jetstream.New(tool)
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		if _, err := tjs.Stream(rctx, link.StreamName("eu-west")); err != nil {
			t.Fatalf("us-east reading eu-west's stream: %v", err)
		}
		if _, err := tjs.Consumer(rctx, link.StreamName("eu-west"), link.ConsumerName("eu-west", "us-east")); err != nil {
			t.Fatalf("us-east reading its consumer on eu-west's stream: %v", err)
		}
		// eu-west's stream is intact: a new write there reaches us-east.
		if r := writer.do(t, "PUT", euURL+"/v1/kv/after", `{"b":2}`); r.status != 200 {
			t.Fatalf("write at eu-west: %d %s", r.status, r.body)
		}
		eventually(t, 15*time.Second, "eu-west's write replicated to us-east", func() bool {
			return reader.do(t, "GET", usURL+"/v1/kv/after", "").status == 200
		})
		if strings.Contains(usLogs.String(), "undecodable") {
			t.Fatal("us-east received a forged event")
		}
	})

	t.Run("tokens", func(t *testing.T) {
		file := filepath.Join(dir, deploy.TokensFile)
		// A token added with geogate token add works within seconds, for
		// its prefixes only.
		secret, stderr, err := runGeogate(t, "token", "add", file, "--name", "ci", "--role", "writer", "--prefix", "user/")
		if err != nil {
			t.Fatalf("token add: %v %s", err, stderr)
		}
		ci := httpsClient{http: hc, token: strings.TrimSpace(secret)}
		eventually(t, 5*time.Second, "the added token accepted", func() bool {
			return ci.do(t, "PUT", usURL+"/v1/kv/user/1", `1`).status == 200
		})
		if r := ci.do(t, "PUT", usURL+"/v1/kv/cart/1", `1`); r.status != 403 || r.code(t) != "forbidden" {
			t.Errorf("a token limited to user/ wrote cart/1: %d %s", r.status, r.body)
		}
		// Revocation: removing the writer token from the file refuses it
		// within seconds, without a restart.
		if _, stderr, err := runGeogate(t, "token", "revoke", file, "writer"); err != nil {
			t.Fatalf("token revoke: %v %s", err, stderr)
		}
		start := time.Now()
		eventually(t, 5*time.Second, "the removed writer token refused", func() bool {
			return writer.do(t, "PUT", usURL+"/v1/kv/k2", `1`).status == 401
		})
		t.Logf("revoked after %s", time.Since(start).Round(time.Millisecond))
		if r := admin.do(t, "PUT", usURL+"/v1/kv/k2", `1`); r.status != 200 {
			t.Fatalf("admin after the edit: %d", r.status)
		}
	})
}

// TestSecuredSingleNode covers what needs a node of its own: mutual TLS
// (missing, expired, not yet valid and foreign client certificates refused
// with their reasons), certificate reload without a restart, the separate
// metrics listener, and the refusal of a half-configured TLS at start.
func TestSecuredSingleNode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deploy")
	base := freeBase(t)
	nodes := initDeployment(t, dir, "--regions", "solo", "--base-port", strconv.Itoa(base))
	cfg := nodes[0].config
	caFile := filepath.Join(dir, deploy.CAFile)

	// Refused at start, naming the key, before touching data.
	if _, stderr, err := runGeogate(t, "serve", "--config", cfg, "--set", "http.tls.key_file="); err == nil || !strings.Contains(stderr, "http.tls.key_file") {
		t.Fatalf("serve with a certificate but no key: %v %q", err, stderr)
	}
	if _, stderr, err := runGeogate(t, "serve", "--config", cfg, "--set", "auth.tokens_file=", "--set", "auth.enabled=true"); err == nil || !strings.Contains(stderr, "auth.tokens_file") {
		t.Fatalf("serve with auth on but no tokens file: %v %q", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Fatal("a refused config touched the data directory")
	}

	metricsPort := freePorts(t, 1)[0]
	_, logs := startNode(t, cfg, "--set", "http.tls.client_ca_file="+caFile, "--set", fmt.Sprintf("metrics.listen=127.0.0.1:%d", metricsPort))
	ca, err := pki.LoadCA(caFile, filepath.Join(dir, deploy.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert := func(ca *pki.CA, from, to time.Time) *tls.Certificate {
		l, err := ca.Issue(pki.IssueOptions{CommonName: "client", Hosts: []string{"client.example"}, NotBefore: from, NotAfter: to})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	foreign, _ := pki.NewCA("another deployment", now.Add(-time.Hour), now.Add(time.Hour))
	token := readToken(t, dir, auth.Reader)
	get := func(c *tls.Certificate) (int, error) {
		hc := newClient(t, caFile, c)
		req, _ := http.NewRequest("GET", nodes[0].url+"/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(cert(ca, now.Add(-time.Hour), now.Add(time.Hour))); err != nil || code != 200 {
		t.Fatalf("valid client certificate: %d %v", code, err)
	}
	for _, c := range []struct {
		name   string
		cert   *tls.Certificate
		reason string
	}{
		{"no client certificate", nil, pki.ReasonNoCertificate},
		{"expired", cert(ca, now.Add(-2*time.Hour), now.Add(-time.Hour)), pki.ReasonExpired},
		{"not yet valid", cert(ca, now.Add(time.Hour), now.Add(2*time.Hour)), pki.ReasonNotYetValid},
		{"another CA", cert(foreign, now.Add(-time.Hour), now.Add(time.Hour)), pki.ReasonUnknownCA},
	} {
		if code, err := get(c.cert); err == nil {
			t.Errorf("%s: answered %d, want a refused connection", c.name, code)
		}
		if c.reason != pki.ReasonNoCertificate {
			eventually(t, 5*time.Second, c.name+": a log line with reason="+c.reason, func() bool {
				return strings.Contains(logs.String(), "reason="+c.reason)
			})
		}
	}
	// The metrics listener needs neither TLS nor a token, and counts the
	// refused certificates.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, reason := range []string{pki.ReasonExpired, pki.ReasonNotYetValid, pki.ReasonUnknownCA} {
		// Each was logged (above) after it was counted.
		if v := metric(string(body), `geogate_auth_failures_total{reason="`+reason+`"}`); v < 1 {
			t.Errorf("geogate_auth_failures_total{reason=%q} = %v on metrics.listen", reason, v)
		}
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/status", metricsPort)); err != nil || resp.StatusCode != 404 {
		t.Errorf("metrics.listen serves more than /metrics: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Certificate reload: a renewed pair is served without a restart.
	serial := func() string {
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		conn, err := tls.Dial("tcp", strings.TrimPrefix(nodes[0].url, "https://"), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{*cert(ca, now.Add(-time.Hour), now.Add(time.Hour))}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	if out, stderr, err := runGeogate(t, "cert", "renew", dir, "solo"); err != nil || !strings.Contains(out, "renewed solo") {
		t.Fatalf("cert renew: %v %s %s", err, out, stderr)
	}
	eventually(t, 5*time.Second, "the renewed certificate served", func() bool { return serial() != before })
	eventually(t, 5*time.Second, "the reload logged", func() bool { return strings.Contains(logs.String(), "certificate reloaded") })
}

// appendHomeRules adds to the config at path the rules that make keys
// under home/ live in us-east (every other key lww).
func appendHomeRules(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\nrules:\n  - {name: homed, match: 'key startsWith \"home/\"', strategy: home_region, home: '\"us-east\"'}\n" +
		"  - {name: default, match: 'true', strategy: lww}\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// checkHomeForwarded writes home/1 at eu-west (appendHomeRules' rules) and
// checks that it was forwarded to us-east and made there: us-east holds
// one version of it, of origin us-east.
func checkHomeForwarded(t *testing.T, writer, reader httpsClient, euURL, usURL string) {
	t.Helper()
	eventually(t, 20*time.Second, "a homed write at eu-west forwarded to us-east", func() bool {
		return writer.do(t, "PUT", euURL+"/v1/kv/home/1", `{"v":1}`).status == 200
	})
	m := reader.do(t, "GET", usURL+"/v1/kv/home/1?meta=true", "")
	var meta struct {
		Versions []struct {
			Origin string `json:"origin"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(m.body, &meta); m.status != 200 || err != nil || len(meta.Versions) != 1 || meta.Versions[0].Origin != "us-east" {
		t.Fatalf("home/1 at us-east: %d %s (%v); want one version made by us-east", m.status, m.body, err)
	}
}
