package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
)

func newInit() *cobra.Command {
	var (
		spec    deploy.Spec
		regions []string
		hosts   []string
	)
	cmd := &cobra.Command{
		Use:   "init DIR --regions R1,R2,... [--nodes N] [--topology KIND] [--hub R] [--base-port P] [--hosts R=HOST,...] [--insecure]",
		Short: "Write a ready deployment: node configs, CA and certificates, NATS credentials, tokens",
		Long: "Write a deployment into DIR (new or empty): one config per node, DIR/<node>.yaml, to start with\n" +
			"`geogate serve --config DIR/<node>.yaml`; unless --insecure, a private CA (DIR/tls/ca.pem) with each\n" +
			"node's certificate and key (DIR/tls/), each region's NATS identity (DIR/nats/), one bearer token per role\n" +
			"(DIR/tokens/admin.token, writer.token, reader.token) and the tokens file of their hashes (DIR/auth/);\n" +
			"in every case the token-signing keys (DIR/secrets/token.keys). Secrets are written 0600.\n" +
			"Prints one line per node: `node <node> <region> <url> <config-path>`.\n" +
			"Ports: node i listens on P+i (HTTP) and P+50+i (NATS), all within P..P+99.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Regions = splitList(regions)
			spec.Hosts = map[string]string{}
			for _, h := range splitList(hosts) {
				r, host, ok := strings.Cut(h, "=")
				if !ok || r == "" || host == "" {
					return fmt.Errorf("--hosts %q: want REGION=HOST, e.g. --hosts us-east=10.0.0.5,eu-west=eu.example.com", h)
				}
				if _, dup := spec.Hosts[r]; dup {
					return fmt.Errorf("--hosts: region %s is given twice", r)
				}
				spec.Hosts[r] = host
			}
			if spec.Topology.Kind == config.TopologyStar && spec.Topology.Hub == "" && len(spec.Regions) > 0 {
				spec.Topology.Hub = spec.Regions[0]
			}
			nodes, err := deploy.Write(args[0], spec)
			if err != nil {
				return fmt.Errorf("init: %w", err)
			}
			for _, n := range nodes {
				fmt.Fprintln(cmd.OutOrStdout(), n.Line())
			}
			if spec.Insecure {
				fmt.Fprintln(cmd.ErrOrStderr(), "geogate: --insecure: plain HTTP without tokens and open NATS ports; for a trusted network only")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&regions, "regions", nil, "region names, comma-separated (required), e.g. us-east,eu-west,ap-south")
	f.IntVar(&spec.Nodes, "nodes", 1, "nodes per region: 1, or 3 or 5 for a region that survives losing a machine (named <region>-1 ... <region>-N)")
	f.StringVar(&spec.Topology.Kind, "topology", config.TopologyAllToAll, "all-to-all, star or circular")
	f.StringVar(&spec.Topology.Hub, "hub", "", "star hub (default: the first region)")
	f.IntVar(&spec.BasePort, "base-port", deploy.DefaultBasePort, "first port; the deployment uses ports P to P+99")
	f.StringSliceVar(&hosts, "hosts", nil, "REGION=HOST,...: the host each region runs on (default 127.0.0.1); its certificate covers it")
	f.BoolVar(&spec.Insecure, "insecure", false, "no TLS, no tokens, open NATS (a trusted network only)")
	f.StringVar(&spec.DataRoot, "data-root", "", "where nodes keep their data, one directory per node (default DIR/data)")
	_ = cmd.MarkFlagRequired("regions")
	return cmd
}

// splitList flattens comma-separated flag values, trimming spaces and
// dropping empty items.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
