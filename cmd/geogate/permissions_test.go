package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
)

// TestPermissionsIsServerConfig: what `geogate permissions` prints is a
// nats-server authorization block that a real server loads, with exactly
// the users and permissions the embedded server enforces.
func TestPermissionsIsServerConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if _, err := deploy.Write(dir, deploy.Spec{Regions: []string{"us-east", "eu-west", "ap-south"}, Topology: config.Topology{Kind: "star", Hub: "eu-west"}}); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "us-east.yaml")
	out, err := run("permissions", "--config", cfgPath)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte("port: -1\n"+out), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server refuses the printed block: %v\n%s", err, out)
	}
	cfg, err := config.Load(cfgPath, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	grants, err := gateway.NATSGrants(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Nkeys) != len(grants) {
		t.Fatalf("%d users, want %d", len(opts.Nkeys), len(grants))
	}
	for i, g := range grants {
		u := opts.Nkeys[i]
		if u.Nkey != cfg.Regions[g.User].NKey || !slices.Equal(u.Permissions.Publish.Allow, g.PublishAllow) ||
			!slices.Equal(u.Permissions.Publish.Deny, g.PublishDeny) || !slices.Equal(u.Permissions.Subscribe.Allow, g.SubscribeAllow) {
			t.Errorf("user %d: %+v %+v, want %+v", i, u, u.Permissions, g)
		}
	}
	if !strings.Contains(out, "geo_from_us-east_to_eu-west") || strings.Contains(out, "geo_from_us-east_to_ap-south") {
		t.Errorf("in the star hubbed at eu-west, only eu-west pulls from us-east:\n%s", out)
	}
}

// TestExternalNATSWithPermissions runs a secured two-region deployment on
// external NATS servers: each region's server is a real nats-server (in
// this process) configured by hand from the deployment's files, with TLS
// client certificates required and exactly the users and permissions
// `geogate permissions` prints; the regions run `geogate serve` with
// nats.embedded off and nats.url pointing at their server. Writes
// replicate both ways, and a homed write is forwarded.
func TestExternalNATSWithPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deploy")
	base := freeBase(t)
	nodes := initDeployment(t, dir, "--regions", "us-east,eu-west", "--base-port", strconv.Itoa(base))
	natsURL := map[string]string{} // region -> the URL of its server
	for _, n := range nodes {
		cfg, err := config.Load(n.config, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		natsURL[n.region] = cfg.Regions[n.region].NATS
		perms, err := run("permissions", "--config", n.config)
		if err != nil {
			t.Fatalf("%v: %s", err, perms)
		}
		u, err := url.Parse(natsURL[n.region])
		if err != nil {
			t.Fatal(err)
		}
		conf := fmt.Sprintf("listen: %q\nserver_name: ext-%s\nmax_payload: 2097152\njetstream { store_dir: %q }\n"+
			"tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }\n%s",
			u.Host, n.region, t.TempDir(),
			filepath.Join(dir, deploy.CertFile(n.region)), filepath.Join(dir, deploy.KeyFile(n.region)), filepath.Join(dir, deploy.CAFile), perms)
		path := filepath.Join(t.TempDir(), "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("nats-server refuses %s: %v\n%s", path, err, conf)
		}
		opts.NoSigs = true
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		t.Cleanup(ns.Shutdown)
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-server for %s not ready", n.region)
		}
		appendHomeRules(t, n.config)
	}
	// Each region uses its server instead of an embedded one.
	for _, n := range nodes {
		startNode(t, n.config, "--nats-embedded=false", "--nats-url", natsURL[n.region])
	}
	hc := newClient(t, filepath.Join(dir, deploy.CAFile), nil)
	writer := httpsClient{http: hc, token: readToken(t, dir, auth.Writer)}
	reader := httpsClient{http: hc, token: readToken(t, dir, auth.Reader)}
	us, eu := nodes[0].url, nodes[1].url
	if r := writer.do(t, "PUT", us+"/v1/kv/from-us", `{"v":1}`); r.status != 200 {
		t.Fatalf("PUT at us-east: %d %s", r.status, r.body)
	}
	if r := writer.do(t, "PUT", eu+"/v1/kv/from-eu", `{"v":2}`); r.status != 200 {
		t.Fatalf("PUT at eu-west: %d %s", r.status, r.body)
	}
	eventually(t, 20*time.Second, "each region's write at the other", func() bool {
		return reader.do(t, "GET", eu+"/v1/kv/from-us", "").status == 200 && reader.do(t, "GET", us+"/v1/kv/from-eu", "").status == 200
	})
	checkHomeForwarded(t, writer, reader, eu, us)
}
