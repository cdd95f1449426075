package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
)

func newServe() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run one region until SIGINT or SIGTERM",
		Long: "Run one region: its HTTP API, its store and its replication links. Configuration comes from the YAML\n" +
			"file (--config, else $GEOGATE_CONFIG), then GEOGATE_* environment variables (GEOGATE_HTTP__LISTEN, or\n" +
			"GEOGATE_HTTP_LISTEN, sets http.listen), then flags. The file's rules are reloaded when it changes.\n" +
			"On SIGINT or SIGTERM it stops taking writes, flushes and closes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load("", os.Environ(), cmd.Flags())
			if err != nil {
				return err
			}
			logger := cfg.Log.NewLogger(os.Stderr)
			ctx, stop := signalContext(cmd)
			defer stop()
			node, err := gateway.New(cfg, gateway.Options{Logger: logger, RulesFile: cfg.File()})
			if err != nil {
				return err
			}
			if err := node.Start(ctx, nil); err != nil {
				node.Close()
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "region %s %s\n", cfg.Region, node.HTTPURL())
			<-ctx.Done()
			logger.Info("shutting down")
			return node.Close()
		},
	}
	config.RegisterFlags(cmd.Flags())
	return cmd
}

func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}
