package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/gateway/bench"
)

func newBench() *cobra.Command {
	var (
		o          bench.Options
		jsonOut    string
		lagSeconds int
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure geogate against raw Badger and raw JetStream in one run and print the ratios",
		Long: "Measure, in one run on this machine: store and HTTP writes against raw Badger transactions, replication\n" +
			"throughput against raw JetStream publish-then-consume, replication lag at a steady rate, and catch-up after\n" +
			"a paused link, a secured 2-region deployment (TLS, tokens, NATS credentials) against the same without, and\n" +
			"regions of several nodes: a 3-node region's writes (with p99 latency) against a 1-node region's, and reads\n" +
			"spread over leader and followers against the leader alone, and the lifecycle: writes with anti-entropy\n" +
			"against without, and a snapshot's transfer between two regions.\n" +
			"Figures are printed as they finish; the ratios at the end are what to compare across machines.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := os.MkdirTemp("", "geogate-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			o.Dir, o.Progress = dir, cmd.OutOrStdout()
			if cmd.Flags().Changed("lag-seconds") {
				if cmd.Flags().Changed("lag") {
					return errors.New("--lag-seconds is the old spelling of --lag: give only --lag (a duration, e.g. --lag 5s)")
				}
				if lagSeconds <= 0 {
					return fmt.Errorf("--lag-seconds must be a positive number of seconds, got %d; use --lag with a duration, e.g. --lag 5s", lagSeconds)
				}
				o.Lag = time.Duration(lagSeconds) * time.Second
			}
			if o.Lag <= 0 {
				return fmt.Errorf("--lag must be a positive duration, e.g. --lag 5s, got %s", o.Lag)
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			rep, err := bench.Run(ctx, o)
			if err != nil {
				return err
			}
			if jsonOut != "" {
				b, _ := json.MarshalIndent(rep, "", "  ")
				return os.WriteFile(jsonOut, b, 0o644)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Writes, "writes", 3000, "writes per write benchmark")
	f.IntVar(&o.Events, "events", 20000, "events in the replication throughput run")
	f.IntVar(&o.Backlog, "backlog", 100000, "events in the catch-up backlog")
	f.IntVar(&o.Rate, "rate", 1000, "writes per second in the lag run")
	f.DurationVar(&o.Lag, "lag", 5*time.Second, "duration of the lag run (e.g. 5s)")
	// The flag's former spelling, in whole seconds: still read, with a
	// warning that names the new one.
	f.IntVar(&lagSeconds, "lag-seconds", 0, "")
	_ = f.MarkDeprecated("lag-seconds", "use --lag with a duration, e.g. --lag 5s")
	f.IntVar(&o.Clients, "clients", 16, "concurrent HTTP clients")
	f.IntVar(&o.SnapshotRecords, "snapshot-records", 200000, "records in the snapshot transferred between two regions")
	f.StringSliceVar(&o.Only, "only", nil, "run only these parts: writes, rules, replication, security, nodes, lifecycle")
	f.StringVar(&jsonOut, "json", "", "also write the report as JSON to this file")
	return cmd
}
