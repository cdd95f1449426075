package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/geogate/geogate/gateway"
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
