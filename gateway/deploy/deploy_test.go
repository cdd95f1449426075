package deploy_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/gateway/pki"
	"github.com/geogate/geogate/internal/wait"
)

func freeBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(40000)
		free := true
		for p := base; p < base+deploy.PortSpan && free; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free range of ports")
	return 0
}

func TestWriteRefuses(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o644) //nolint:errcheck // the test checks the refusal
	for _, c := range []struct {
		name string
		dir  string
		spec deploy.Spec
		want string
	}{
		{"non-empty dir", dir, deploy.Spec{Regions: []string{"a"}, Topology: config.Topology{Kind: "all-to-all"}}, "not empty"},
		{"too many nodes", t.TempDir(), deploy.Spec{Regions: []string{"a"}, Nodes: 10, Topology: config.Topology{Kind: "all-to-all"}}, "--nodes 10: must be 1 to 9"},
		{"nodes beyond the ports", t.TempDir(), deploy.Spec{Regions: []string{"a", "b", "c", "d"}, Nodes: 9, Topology: config.Topology{Kind: "all-to-all"}}, "36 nodes do not fit"},
		{"host of an unknown node", t.TempDir(), deploy.Spec{Regions: []string{"a"}, Nodes: 3, Hosts: map[string]string{"a-4": "h"}, Topology: config.Topology{Kind: "all-to-all"}}, "nor one of their nodes"},
		{"no regions", t.TempDir(), deploy.Spec{Topology: config.Topology{Kind: "all-to-all"}}, "--regions"},
		{"bad region", t.TempDir(), deploy.Spec{Regions: []string{"US"}, Topology: config.Topology{Kind: "all-to-all"}}, "US"},
		{"star without hub", t.TempDir(), deploy.Spec{Regions: []string{"a", "b"}, Topology: config.Topology{Kind: "star"}}, "hub"},
		{"port range", t.TempDir(), deploy.Spec{Regions: []string{"a"}, BasePort: 65500, Topology: config.Topology{Kind: "all-to-all"}}, "--base-port"},
		{"host of no region", t.TempDir(), deploy.Spec{Regions: []string{"a"}, Hosts: map[string]string{"b": "h"}, Topology: config.Topology{Kind: "all-to-all"}}, "not one of the regions"},
		{"bad host", t.TempDir(), deploy.Spec{Regions: []string{"a"}, Hosts: map[string]string{"a": "h/x"}, Topology: config.Topology{Kind: "all-to-all"}}, "not a host"},
	} {
		_, err := deploy.Write(c.dir, c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
		if c.name == "non-empty dir" && !errors.Is(err, deploy.ErrNotEmpty) {
			t.Errorf("non-empty dir: %v is not ErrNotEmpty", err)
		}
	}
}

func TestWriteHosts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	nodes, err := deploy.Write(dir, deploy.Spec{Regions: []string{"a", "b"}, Topology: config.Topology{Kind: "all-to-all"},
		Hosts: map[string]string{"a": "a.example.com", "b": "10.0.0.7"}, BasePort: 9000, DataRoot: "/var/lib/geogate"})
	if err != nil {
		t.Fatal(err)
	}
	if nodes[0].URL != "https://a.example.com:9000" || nodes[1].URL != "https://10.0.0.7:9001" {
		t.Fatalf("urls %+v", nodes)
	}
	c, err := config.Load(nodes[1].Config, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "0.0.0.0:9001" || c.NATS.Listen != "0.0.0.0:9051" || c.DataDir != "/var/lib/geogate/b" ||
		c.Regions["a"].NATS != "tls://a.example.com:9050" || c.NATS.TLS.CertFile != filepath.Join(dir, "tls/b.pem") {
		t.Fatalf("config of b: %+v", c)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "tls/a.pem"))
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("a.example.com"); err != nil {
		t.Errorf("a's certificate: %v", err)
	}
	if err := cert.VerifyHostname("10.0.0.7"); err == nil {
		t.Error("a's certificate is valid for b's host")
	}
}

// TestWriteRunsAsWritten starts, in this process, the nodes of a secured
// and of an insecure deployment from the configs Write wrote, and checks
// that a write at one region is read at the other.
func TestWriteRunsAsWritten(t *testing.T) {
	for _, tc := range []struct {
		name     string
		insecure bool
		hosts    map[string]string
	}{
		{"secured", false, nil},
		{"insecure", true, nil},
		// Listening on every interface, reached by name.
		{"secured with hosts", false, map[string]string{"a": "localhost", "b": "127.0.0.1"}},
	} {
		insecure := tc.insecure
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			nodes, err := deploy.Write(dir, deploy.Spec{Regions: []string{"a", "b"}, Topology: config.Topology{Kind: "all-to-all"},
				BasePort: freeBase(t), Insecure: insecure, Hosts: tc.hosts})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{deploy.TokenKeysFile} {
				if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("%s: %v %v", f, fi, err)
				}
			}
			_, statErr := os.Stat(filepath.Join(dir, deploy.CAFile))
			if insecure != os.IsNotExist(statErr) {
				t.Fatalf("insecure %v, CA file: %v", insecure, statErr)
			}
			for _, n := range nodes {
				c, err := config.Load(n.Config, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				node, err := gateway.New(c, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				if err := node.Start(context.Background(), nil); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { node.Close() })
				if tc.hosts == nil && node.HTTPURL() != n.URL {
					t.Fatalf("node serves %s, init printed %s", node.HTTPURL(), n.URL)
				}
			}
			hc := &http.Client{Timeout: 5 * time.Second}
			token := ""
			if !insecure {
				pool, _ := pki.LoadPool(filepath.Join(dir, deploy.CAFile))
				hc.Transport = &http.Transport{TLSClientConfig: pki.ClientConfig(pool, nil)}
				b, _ := os.ReadFile(filepath.Join(dir, deploy.RoleTokenFile(auth.Admin)))
				token = strings.TrimSpace(string(b))
			}
			do := func(method, url, body string) int {
				req, _ := http.NewRequest(method, url, strings.NewReader(body))
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck // drained
				resp.Body.Close()
				return resp.StatusCode
			}
			if s := do("PUT", nodes[0].URL+"/v1/kv/k", `{"v":1}`); s != 200 {
				t.Fatalf("PUT at a: %d", s)
			}
			wait.For(t, 15*time.Second, "the write at a to reach b", func() bool { return do("GET", nodes[1].URL+"/v1/kv/k", "") == 200 })
		})
	}
}

// TestWriteSeveralNodes: --nodes 3 writes a config per node, named
// <region>-<k>, each naming its node and its region's three nodes, with
// ports in their ranges, one certificate per node and one NATS seed per
// region.
func TestWriteSeveralNodes(t *testing.T) {
	dir := t.TempDir()
	nodes, err := deploy.Write(dir, deploy.Spec{Regions: []string{"a", "b"}, Nodes: 3, Topology: config.Topology{Kind: "all-to-all"},
		BasePort: 9000, Hosts: map[string]string{"b-2": "10.0.0.9"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name+"@"+n.Region)
	}
	if got := strings.Join(names, " "); got != "a-1@a a-2@a a-3@a b-1@b b-2@b b-3@b" {
		t.Fatalf("nodes %s", got)
	}
	if nodes[4].URL != "https://10.0.0.9:9004" {
		t.Errorf("b-2's url %s", nodes[4].URL)
	}
	c, err := config.Load(nodes[4].Config, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Node != "b-2" || c.Region != "b" || !c.Clustered() || len(c.Nodes) != 3 || c.NATS.Replicas != 3 {
		t.Fatalf("b-2's config: node %q region %q nodes %v replicas %d", c.Node, c.Region, c.NodeNames(), c.NATS.Replicas)
	}
	if c.HTTP.Listen != "0.0.0.0:9004" || c.NATS.Listen != "0.0.0.0:9037" || c.NATS.ClusterListen != "0.0.0.0:9070" {
		t.Errorf("b-2 listens http %s nats %s cluster %s", c.HTTP.Listen, c.NATS.Listen, c.NATS.ClusterListen)
	}
	if got := c.Regions["a"].NATS; got != "tls://127.0.0.1:9033,tls://127.0.0.1:9034,tls://127.0.0.1:9035" {
		t.Errorf("region a's nats %s", got)
	}
	if c.NATS.NKeySeedFile != filepath.Join(dir, "nats", "b.nk") || c.HTTP.TLS.CertFile != filepath.Join(dir, "tls", "b-2.pem") {
		t.Errorf("b-2's seed %s cert %s", c.NATS.NKeySeedFile, c.HTTP.TLS.CertFile)
	}
	a1, err := config.Load(nodes[0].Config, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Regions["b"].NKey != c.Regions["b"].NKey || a1.NATS.NKeySeedFile != filepath.Join(dir, "nats", "a.nk") {
		t.Errorf("a-1 sees b's nkey %s (b-2: %s), uses seed %s", a1.Regions["b"].NKey, c.Regions["b"].NKey, a1.NATS.NKeySeedFile)
	}
	b, err := os.ReadFile(filepath.Join(dir, "tls", "b-2.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("10.0.0.9"); err != nil {
		t.Errorf("b-2's certificate: %v", err)
	}
}
