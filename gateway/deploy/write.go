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

// PortSpan is how many ports a deployment may use from its base port. With
// one node per region, node i (in region order) listens on base+i for HTTP
// and base+PortSpan/2+i for NATS, so at most PortSpan/2 nodes; with
// several, node i (region by region, each region's nodes in order) listens
// on base+i for HTTP, base+PortSpan/3+i for NATS clients and
// base+2*PortSpan/3+i for the routes of its region's NATS cluster, so at
// most PortSpan/3 nodes.
const PortSpan = 100

// ports returns node i's HTTP, NATS and cluster ports (cluster 0 for a
// region of one node).
func ports(spec Spec, i int) (httpPort, natsPort, clusterPort int) {
	if spec.Nodes == 1 {
		return spec.BasePort + i, spec.BasePort + PortSpan/2 + i, 0
	}
	third := PortSpan / 3
	return spec.BasePort + i, spec.BasePort + third + i, spec.BasePort + 2*third + i
}

// maxNodes is how many nodes fit in PortSpan.
func maxNodes(spec Spec) int {
	if spec.Nodes == 1 {
		return PortSpan / 2
	}
	return PortSpan / 3
}

// MaxNodesPerRegion bounds --nodes: a region's NATS cluster keeps its log
// and streams on at most config.MaxNATSReplicas servers, and a majority
// must be up.
const MaxNodesPerRegion = 9

// Spec describes a deployment to write.
type Spec struct {
	// Regions are the region names, in order (the circular ring's default
	// order, the first region is the default merge resolver).
	Regions []string
	// Nodes is the number of nodes per region (default 1). Nodes are named
	// after their region when it is 1, else <region>-1 ... <region>-N.
	Nodes int
	// Topology is the topology section (kind, hub).
	Topology config.Topology
	// BasePort is the first port (default DefaultBasePort); every port is
	// within BasePort to BasePort+PortSpan-1.
	BasePort int
	// Hosts maps a region, or a node, to the host its nodes run on (a DNS
	// name or an IP address; a node's own entry wins); others run on
	// 127.0.0.1. A node with a host listens on every interface (0.0.0.0),
	// one without on loopback.
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
	if spec.Nodes < 1 || spec.Nodes > MaxNodesPerRegion {
		return fmt.Errorf("--nodes %d: must be 1 to %d (3 or 5 for a region that survives losing 1 or 2 machines)", spec.Nodes, MaxNodesPerRegion)
	}
	if spec.BasePort == 0 {
		spec.BasePort = DefaultBasePort
	}
	if len(spec.Regions) == 0 {
		return errors.New("--regions: name at least one region, e.g. --regions us-east,eu-west")
	}
	if max := maxNodes(*spec); len(spec.Regions)*spec.Nodes > max {
		return fmt.Errorf("--regions: %d nodes do not fit in %d ports (at most %d)", len(spec.Regions)*spec.Nodes, PortSpan, max)
	}
	if spec.BasePort < 1 || spec.BasePort+PortSpan-1 > 65535 {
		return fmt.Errorf("--base-port %d: must be 1 to %d (the deployment uses the %d ports from it)", spec.BasePort, 65535-PortSpan+1, PortSpan)
	}
	if err := topology.Validate(spec.Regions, topology.Spec{Kind: topology.Kind(spec.Topology.Kind), Hub: spec.Topology.Hub, Order: spec.Topology.Order}); err != nil {
		return err
	}
	nodes := spec.nodeNames()
	for r, h := range spec.Hosts {
		if !slices.Contains(spec.Regions, r) && !slices.ContainsFunc(nodes, func(n [2]string) bool { return n[0] == r }) {
			return fmt.Errorf("--hosts %s=%s: %q is not one of the regions %s, nor one of their nodes", r, h, r, strings.Join(spec.Regions, ", "))
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

	var nodes []Node
	hosts, regionOf := map[string][]string{}, map[string]string{}
	for i, nr := range spec.nodeNames() {
		name, r := nr[0], nr[1]
		host := hostOf(spec, name, r)
		httpPort, _, _ := ports(spec, i)
		nodes = append(nodes, Node{Name: name, Region: r, Config: filepath.Join(abs, name+".yaml"),
			URL: scheme(spec, "https", "http") + "://" + net.JoinHostPort(host, strconv.Itoa(httpPort))})
		hosts[name] = uniq(append([]string{host}, DefaultHosts...))
		regionOf[name] = r
	}
	var m *Material
	if !spec.Insecure {
		names := make([]string, len(nodes))
		for i, n := range nodes {
			names[i] = n.Name
		}
		if m, err = WriteMaterial(abs, names, MaterialOptions{Hosts: hosts, Regions: regionOf, Now: spec.Now}); err != nil {
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

// nodeNames returns every node and its region, region by region.
func (spec Spec) nodeNames() [][2]string {
	var out [][2]string
	for _, r := range spec.Regions {
		for k := range max(spec.Nodes, 1) {
			name := r
			if spec.Nodes > 1 {
				name = fmt.Sprintf("%s-%d", r, k+1)
			}
			out = append(out, [2]string{name, r})
		}
	}
	return out
}

// hostOf returns the host of a node of region: its own entry in Hosts,
// else its region's, else 127.0.0.1.
func hostOf(spec Spec, node, region string) string {
	if h, ok := spec.Hosts[node]; ok {
		return h
	}
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

// nodeConfig renders the commented config of node i (of spec.nodeNames()).
func nodeConfig(spec Spec, i int, m *Material, path string) string {
	all := spec.nodeNames()
	node, region := all[i][0], all[i][1]
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mode := "secured: HTTPS with bearer tokens, NATS with TLS and per-region credentials"
	if spec.Insecure {
		mode = "INSECURE: plain HTTP without tokens, open NATS (written with --insecure)"
	}
	if spec.Nodes == 1 {
		p("# geogate: node %s (region %s) of a %d-region deployment written by `geogate init`.\n", node, region, len(spec.Regions))
	} else {
		p("# geogate: node %s, one of the %d nodes of region %s, in a %d-region deployment written by\n# `geogate init`.\n", node, spec.Nodes, region, len(spec.Regions))
	}
	p("# %s.\n#\n", mode)
	p("# Start it:  geogate serve --config %s\n", path)
	p("#\n# Relative file paths below are relative to this file's directory, so the\n")
	p("# deployment folder can be copied elsewhere whole. configs/us-east.yaml in\n")
	p("# geogate's repository explains every key; those left out take their defaults.\n\n")
	p("region: %s\n", region)
	if spec.Nodes > 1 {
		p("node: %s\n", node)
	}
	p("\n# Every region: its client API URL, its NATS URL")
	if spec.Nodes > 1 {
		p("s (every node's server; peers pull from\n# any)")
	} else {
		p(" (peers pull from it)")
	}
	if !spec.Insecure {
		p(",\n# and its public NATS identity (nkey)")
	}
	p(".\nregions:\n")
	width := 0
	for _, r := range spec.Regions {
		width = max(width, len(r))
	}
	addr := func(j int, sch string, which int) string {
		h, n, c := ports(spec, j)
		port := []int{h, n, c}[which]
		return sch + "://" + net.JoinHostPort(hostOf(spec, all[j][0], all[j][1]), strconv.Itoa(port))
	}
	for ri, r := range spec.Regions {
		first := ri * spec.Nodes
		var natsURLs []string
		for k := range spec.Nodes {
			natsURLs = append(natsURLs, addr(first+k, scheme(spec, "tls", "nats"), 1))
		}
		p("  %-*s { http: %q, nats: %q", width+1, r+":", addr(first, scheme(spec, "https", "http"), 0), strings.Join(natsURLs, ","))
		if m != nil {
			p(", nkey: %s", m.NKeys[r])
		}
		p(" }\n")
	}
	if spec.Nodes > 1 {
		p("\n# This region's nodes: one leads (takes writes, replicates to the other regions), the\n")
		p("# others follow (serve reads, forward writes to the leader) and take over when it is lost.\n")
		p("# Their embedded NATS servers form the region's cluster (routes on the cluster URLs),\n")
		p("# which keeps the region log and the leader lease on every node.\nnodes:\n")
		first := (i / spec.Nodes) * spec.Nodes
		for k := range spec.Nodes {
			j := first + k
			p("  %s: { http: %q, nats: %q, cluster: %q }\n", all[j][0], addr(j, scheme(spec, "https", "http"), 0), addr(j, scheme(spec, "tls", "nats"), 1), addr(j, scheme(spec, "tls", "nats"), 2))
		}
	}
	p("\ntopology:\n  kind: %s\n", spec.Topology.Kind)
	if spec.Topology.Hub != "" {
		p("  hub: %s\n", spec.Topology.Hub)
	}
	if len(spec.Topology.Order) > 0 {
		p("  order: [%s]\n", strings.Join(spec.Topology.Order, ", "))
	}
	p("\n# Badger store and embedded JetStream files.\ndata_dir: %s\n", filepath.Join(spec.DataRoot, node))

	listenHost := "127.0.0.1"
	if hostOf(spec, node, region) != "127.0.0.1" {
		listenHost = "0.0.0.0"
	}
	httpPort, natsPort, clusterPort := ports(spec, i)
	p("\nhttp:\n  listen: %s\n", net.JoinHostPort(listenHost, strconv.Itoa(httpPort)))
	if m != nil {
		p("  # HTTPS; the pair is read again when its files change (geogate cert renew).\n")
		p("  tls:\n    cert_file: %s\n    key_file: %s\n", CertFile(node), KeyFile(node))
		p("    # Uncomment to require client certificates from the deployment's CA (mutual TLS):\n")
		p("    # client_ca_file: %s\n", CAFile)
		p("\n# Bearer tokens (SHA-256 hashes), re-read within seconds of a change: geogate token add / revoke.\n")
		p("# The secrets are in tokens/admin.token, tokens/writer.token, tokens/reader.token.\n")
		p("auth:\n  tokens_file: %s\n", TokensFile)
		p("\n# /metrics alone, without TLS or token, for a scraper on a private network:\n")
		p("# metrics:\n#   listen: 127.0.0.1:9100\n")
	}
	p("\nnats:\n  embedded: true\n  listen: %s\n", net.JoinHostPort(listenHost, strconv.Itoa(natsPort)))
	if spec.Nodes > 1 {
		p("  cluster_listen: %s\n", net.JoinHostPort(listenHost, strconv.Itoa(clusterPort)))
	}
	if m != nil {
		p("  # The server takes only TLS clients with a certificate from the CA, and only\n")
		p("  # the regions' NKey users, each with the permissions the topology plan gives it.\n")
		if spec.Nodes > 1 {
			p("  # Its routes to the region's other nodes use the same certificate, and a password\n")
			p("  # derived from the region's NKey seed, which only the region's nodes hold.\n")
		}
		p("  tls:\n    ca_file: %s\n    cert_file: %s\n    key_file: %s\n", CAFile, CertFile(node), KeyFile(node))
		p("  # This region's NATS identity (private; regions.%s.nkey is its public half).\n", region)
		p("  nkey_seed_file: %s\n", SeedFile(region))
	}
	p("\n# HMAC keys of the context and session tokens; the same file on every node.\n")
	p("security:\n  token_keys_file: %s\n", TokenKeysFile)
	return b.String()
}
