package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
)

// demoRegions are the names the demo gives its regions, in order.
var demoRegions = []string{"us-east", "eu-west", "ap-south", "us-west", "eu-north", "ap-east", "sa-east"}

func newDemo() *cobra.Command {
	var (
		n                  int
		kind, hub, dataDir string
		httpBase, natsBase int
		noSync             bool
		logLevel           string
	)
	cmd := &cobra.Command{
		Use:   "demo [--regions N] [--topology all-to-all|star|circular] [--data DIR]",
		Short: "Run N regions on loopback in one process, each with an embedded NATS server",
		Long: "Run a local multi-region deployment: N regions (default 3) in this process, each with its own Badger\n" +
			"store and embedded NATS JetStream server, linked in the chosen topology. Prints one line per region,\n" +
			"`region <name> http://127.0.0.1:<port>`, then `ready`, and runs until interrupted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 1 || n > len(demoRegions) {
				return fmt.Errorf("--regions must be from 1 to %d, got %d", len(demoRegions), n)
			}
			switch kind {
			case "all-to-all", "star", "circular":
			default:
				return fmt.Errorf("--topology must be all-to-all, star or circular, got %q", kind)
			}
			if dataDir == "" {
				dir, err := os.MkdirTemp("", "geogate-demo-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				dataDir = dir
			}
			regions := demoRegions[:n]
			if kind == "star" && hub == "" {
				hub = regions[0]
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx, stop := signalContext(cmd)
			defer stop()
			cluster, err := gateway.StartCluster(ctx, gateway.ClusterSpec{
				Regions: regions, Topology: config.Topology{Kind: kind, Hub: hub}, DataDir: dataDir,
				HTTPBase: httpBase, NATSBase: natsBase, Sync: !noSync,
				Options: func(string) gateway.Options { return gateway.Options{Logger: logger} },
			})
			if err != nil {
				return fmt.Errorf("%w (are ports %d.. and %d.. free? choose others with --http-port and --nats-port)", err, httpBase, natsBase)
			}
			defer cluster.Close()
			fmt.Fprintln(cmd.ErrOrStderr(), "geogate demo: loopback only, without TLS or tokens (for a secured deployment: geogate init)")
			for _, node := range cluster.Nodes() {
				fmt.Fprintf(cmd.OutOrStdout(), "region %s %s\n", node.Config().Region, node.HTTPURL())
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ready")
			<-ctx.Done()
			logger.Info("shutting down")
			return nil
		},
	}
	cmd.Flags().IntVar(&n, "regions", 3, "number of regions (1-7): us-east, eu-west, ap-south, us-west, eu-north, ap-east, sa-east")
	cmd.Flags().StringVar(&kind, "topology", "all-to-all", "all-to-all, star or circular")
	cmd.Flags().StringVar(&hub, "hub", "", "star hub (default: the first region)")
	cmd.Flags().StringVar(&dataDir, "data", "", "data directory (default: a temporary one, removed at exit)")
	cmd.Flags().IntVar(&httpBase, "http-port", 7101, "HTTP port of the first region; region i listens on port+i (0: any free ports)")
	cmd.Flags().IntVar(&natsBase, "nats-port", 7201, "NATS port of the first region; region i listens on port+i (0: any free ports)")
	cmd.Flags().BoolVar(&noSync, "no-sync", false, "acknowledge writes without fsync (faster, not power-loss safe)")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	return cmd
}
