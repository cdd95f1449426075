package deploy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/topology"
)

// DefaultBasePort is the first port of a deployment Write lays out.
const DefaultBasePort = 7101

// PortSpan is how many ports a deployment may use from its base port:
// node i (in region order) listens on base+i for HTTP and base+PortSpan/2+i
// for NATS, so at most PortSpan/2 nodes.
const PortSpan = 100

// Spec describes a deployment to write.
type Spec struct {
	// Regions are the region names, in order (the circular ring's default
	// order, the first region is the default merge resolver).
	Regions []string
	// Nodes is the number of nodes per region; only 1 is supported until
	// regions of several nodes exist.
	Nodes int
	// Topology is the topology section (kind, hub).
	Topology config.Topology
	// BasePort is the first port (default DefaultBasePort); every port is
	// within BasePort to BasePort+PortSpan-1.
	BasePort int
	// Hosts maps a region to the host its nodes run on (a DNS name or an
	// IP address); others run on 127.0.0.1. A node with a host listens on
	// every interface (0.0.0.0), one without on loopback.
	Hosts map[string]string
	// Insecure writes plain-HTTP, open-NATS configs without tokens.
	Insecure bool
	// DataRoot is where the nodes keep their data, one directory per node
	// (default <dir>/data; made absolute).
	DataRoot string
	// Now is the time certificates are issued at (default time.Now).
	Now time.Time
}

// Node is one written node: what `geogate init` prints about it.
type Node struct {
	Name, Region string
	// URL is the node's HTTP API base URL (https unless Insecure).
	URL string
	// Config is the absolute path of its configuration file.
	Config string
}

// Line is the node's line as init prints it: node <node> <region> <url>
// <config-path>.
func (n Node) Line() string {
	return fmt.Sprintf("node %s %s %s %s", n.Name, n.Region, n.URL, n.Config)
}

// ErrNotEmpty is returned by Write for a directory that already holds
// something.
var ErrNotEmpty = errors.New("directory is not empty")

// Check validates spec as Write would, without writing anything.
func (spec *Spec) Check() error {
	if spec.Nodes == 0 {
		spec.Nodes = 1
	}
	if spec.Nodes != 1 {
		return fmt.Errorf("--nodes %d: regions of several nodes are not supported yet; use --nodes 1 (the default)", spec.Nodes)
	}
	if spec.BasePort == 0 {
		spec.BasePort = DefaultBasePort
	}
	if len(spec.Regions) == 0 {
		return errors.New("--regions: name at least one region, e.g. --regions us-east,eu-west")
	}
	if max := PortSpan / 2; len(spec.Regions)*spec.Nodes > max {
		return fmt.Errorf("--regions: %d nodes do not fit in %d ports (at most %d)", len(spec.Regions)*spec.Nodes, PortSpan, max)
	}
	if spec.BasePort < 1 || spec.BasePort+PortSpan-1 > 65535 {
		return fmt.Errorf("--base-port %d: must be 1 to %d (the deployment uses the %d ports from it)", spec.BasePort, 65535-PortSpan+1, PortSpan)
	}
	if err := topology.Validate(spec.Regions, topology.Spec{Kind: topology.Kind(spec.Topology.Kind), Hub: spec.Topology.Hub, Order: spec.Topology.Order}); err != nil {
		return err
	}
	for r, h := range spec.Hosts {
		if !slices.Contains(spec.Regions, r) {
			return fmt.Errorf("--hosts %s=%s: %q is not one of the regions %s", r, h, r, strings.Join(spec.Regions, ", "))
		}
		if h == "" || strings.ContainsAny(h, " /:[]@") && net.ParseIP(h) == nil {
			return fmt.Errorf("--hosts %s=%q: not a host name or IP address", r, h)
		}
	}
	return nil
}

// Write writes the deployment into dir, which must not exist or be empty:
// one config per node, dir/<node>.yaml, and unless Insecure the material
// of WriteMaterial (dir/tls/ca.pem and the nodes' certificates and keys
// under dir/tls/, their NATS seeds under dir/nats/, dir/tokens/<role>.token,
// dir/auth/tokens.yaml) and in every case dir/secrets/token.keys. Every
// config loads (config.Load) and starts as written with `geogate serve
// --config`, from any working directory. It returns the nodes in region
// order. On error, files already written stay (dir was empty).
func Write(dir string, spec Spec) ([]Node, error) {
	if err := spec.Check(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	case err != nil:
		return nil, fmt.Errorf("%s: %w", dir, err)
	case len(entries) > 0:
		return nil, fmt.Errorf("%s: %w; init writes a new deployment into an empty or new directory", dir, ErrNotEmpty)
	}
	if spec.DataRoot == "" {
		spec.DataRoot = filepath.Join(abs, "data")
	}
	if spec.DataRoot, err = filepath.Abs(spec.DataRoot); err != nil {
		return nil, err
	}

	nodes := make([]Node, 0, len(spec.Regions))
	hosts := map[string][]string{}
	for i, r := range spec.Regions {
		host := hostOf(spec, r)
		nodes = append(nodes, Node{Name: r, Region: r, Config: filepath.Join(abs, r+".yaml"),
			URL: scheme(spec, "https", "http") + "://" + net.JoinHostPort(host, strconv.Itoa(spec.BasePort+i))})
		hosts[r] = uniq(append([]string{host}, DefaultHosts...))
	}
	var m *Material
	if !spec.Insecure {
		names := make([]string, len(nodes))
		for i, n := range nodes {
			names[i] = n.Name
		}
		if m, err = WriteMaterial(abs, names, MaterialOptions{Hosts: hosts, Now: spec.Now}); err != nil {
			return nil, err
		}
	} else {
		keys, err := TokenKeys()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(abs, "secrets"), 0o700); err != nil {
			return nil, err
		}
		if err := write(filepath.Join(abs, filepath.FromSlash(TokenKeysFile)), keys, 0o600); err != nil {
			return nil, err
		}
	}
	for i, n := range nodes {
		text := nodeConfig(spec, i, m, n.Config)
		if err := write(n.Config, []byte(text), 0o644); err != nil {
			return nil, err
		}
		// Every written config must load as it is: a mistake here is a
		// bug of init, caught before anyone starts the node.
		if _, err := config.Load(n.Config, nil, nil); err != nil {
			return nil, fmt.Errorf("the config written for %s does not load: %w", n.Name, err)
		}
	}
	return nodes, nil
}

func hostOf(spec Spec, region string) string {
	if h, ok := spec.Hosts[region]; ok {
		return h
	}
	return "127.0.0.1"
}

func scheme(spec Spec, secure, insecure string) string {
	if spec.Insecure {
		return insecure
	}
	return secure
}

func uniq(xs []string) []string {
	var out []string
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// nodeConfig renders the commented config of node i (region spec.Regions[i]).
func nodeConfig(spec Spec, i int, m *Material, path string) string {
	region := spec.Regions[i]
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mode := "secured: HTTPS with bearer tokens, NATS with TLS and per-region credentials"
	if spec.Insecure {
		mode = "INSECURE: plain HTTP without tokens, open NATS (written with --insecure)"
	}
	p("# geogate: node %s (region %s) of a %d-region deployment written by `geogate init`.\n", region, region, len(spec.Regions))
	p("# %s.\n#\n", mode)
	p("# Start it:  geogate serve --config %s\n", path)
	p("#\n# Relative file paths below are relative to this file's directory, so the\n")
	p("# deployment folder can be copied elsewhere whole. configs/us-east.yaml in\n")
	p("# geogate's repository explains every key; those left out take their defaults.\n\n")
	p("region: %s\n\n", region)
	p("# Every region: its client API URL, its NATS URL (peers pull from it)")
	if !spec.Insecure {
		p(",\n# and its public NATS identity (nkey)")
	}
	p(".\nregions:\n")
	width := 0
	for _, r := range spec.Regions {
		width = max(width, len(r))
	}
	for j, r := range spec.Regions {
		host := hostOf(spec, r)
		httpURL := scheme(spec, "https", "http") + "://" + net.JoinHostPort(host, strconv.Itoa(spec.BasePort+j))
		natsURL := scheme(spec, "tls", "nats") + "://" + net.JoinHostPort(host, strconv.Itoa(spec.BasePort+PortSpan/2+j))
		p("  %-*s { http: %q, nats: %q", width+1, r+":", httpURL, natsURL)
		if m != nil {
			p(", nkey: %s", m.NKeys[r])
		}
		p(" }\n")
	}
	p("\ntopology:\n  kind: %s\n", spec.Topology.Kind)
	if spec.Topology.Hub != "" {
		p("  hub: %s\n", spec.Topology.Hub)
	}
	if len(spec.Topology.Order) > 0 {
		p("  order: [%s]\n", strings.Join(spec.Topology.Order, ", "))
	}
	p("\n# Badger store and embedded JetStream files.\ndata_dir: %s\n", filepath.Join(spec.DataRoot, region))

	listenHost := "127.0.0.1"
	if _, ok := spec.Hosts[region]; ok {
		listenHost = "0.0.0.0"
	}
	p("\nhttp:\n  listen: %s\n", net.JoinHostPort(listenHost, strconv.Itoa(spec.BasePort+i)))
	if m != nil {
		p("  # HTTPS; the pair is read again when its files change (geogate cert renew).\n")
		p("  tls:\n    cert_file: %s\n    key_file: %s\n", CertFile(region), KeyFile(region))
		p("    # Uncomment to require client certificates from the deployment's CA (mutual TLS):\n")
		p("    # client_ca_file: %s\n", CAFile)
		p("\n# Bearer tokens (SHA-256 hashes), re-read within seconds of a change: geogate token add / revoke.\n")
		p("# The secrets are in tokens/admin.token, tokens/writer.token, tokens/reader.token.\n")
		p("auth:\n  tokens_file: %s\n", TokensFile)
		p("\n# /metrics alone, without TLS or token, for a scraper on a private network:\n")
		p("# metrics:\n#   listen: 127.0.0.1:9100\n")
	}
	p("\nnats:\n  embedded: true\n  listen: %s\n", net.JoinHostPort(listenHost, strconv.Itoa(spec.BasePort+PortSpan/2+i)))
	if m != nil {
		p("  # The server takes only TLS clients with a certificate from the CA, and only\n")
		p("  # the regions' NKey users, each with the permissions the topology plan gives it.\n")
		p("  tls:\n    ca_file: %s\n    cert_file: %s\n    key_file: %s\n", CAFile, CertFile(region), KeyFile(region))
		p("  # This region's NATS identity (private; regions.%s.nkey is its public half).\n", region)
		p("  nkey_seed_file: %s\n", SeedFile(region))
	}
	p("\n# HMAC keys of the context and session tokens; the same file on every node.\n")
	p("security:\n  token_keys_file: %s\n", TokenKeysFile)
	return b.String()
}
