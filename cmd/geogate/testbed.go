package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/testbed"
)

func newTestbed() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "testbed",
		Short: "Run multi-region scenarios with emulated WAN, faults and checkers",
	}
	cmd.AddCommand(newTestbedRun())
	return cmd
}

func newTestbedRun() *cobra.Command {
	var (
		out, data string
		short     bool
		keep      bool
	)
	cmd := &cobra.Command{
		Use:   "run SCENARIO.yaml",
		Short: "Run a scenario and write its report (report.json, report.md, lag plots)",
		Long: "Run a testbed scenario: start its regions behind an emulated WAN (latency, jitter, bandwidth, partitions),\n" +
			"drive its workload, play its fault timeline (partitions, kill -9 and restart, clock skew), wait for the\n" +
			"regions to converge and run the checks: equal digests everywhere, no acknowledged write lost, session\n" +
			"guarantees, lag bounds. A progress bar shows while it runs; the report goes to --out. The exit status is\n" +
			"non-zero when a check fails.",
		Example: `  geogate testbed run configs/scenarios/wan-3-regions.yaml
  geogate testbed run configs/scenarios/kill9-under-load.yaml --short --out /tmp/report`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := testbed.Load(args[0], short)
			if err != nil {
				return err
			}
			if out == "" {
				name := strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
				out = filepath.Join("reports", name+"-"+time.Now().Format("20060102-150405"))
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the geogate binary for process mode: %w", err)
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			rep, err := testbed.Run(ctx, sc, testbed.RunOptions{
				OutDir: out, DataDir: data, KeepData: keep, Binary: self,
				Progress: testbed.ProgressBar(cmd.ErrOrStderr(), isTerminal(os.Stderr)),
			})
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), rep.Summary())
			fmt.Fprintf(cmd.OutOrStdout(), "report: %s\n", out)
			if !rep.Pass {
				return fmt.Errorf("scenario %s failed its checks (see %s/report.md)", sc.Name, out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "report directory (default reports/<scenario>-<time>)")
	cmd.Flags().BoolVar(&short, "short", false, "run the scenario's short form (as CI does)")
	cmd.Flags().StringVar(&data, "data", "", "regions' data directory (default: a temporary one)")
	cmd.Flags().BoolVar(&keep, "keep-data", false, "keep the regions' data after the run")
	return cmd
}

// isTerminal reports whether f is a character device (a terminal), where
// the progress bar redraws one line.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
