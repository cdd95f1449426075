package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/client"
)

func newWatch() *cobra.Command {
	var f clientFlags
	var after int64
	var feed string
	var idle time.Duration
	cmd := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "Follow a region's change feed: one JSON line per change to a key under PREFIX, until interrupted",
		Long: `Follow the change feed of one region (GET /v1/watch): every change it applies, a local write or a
replicated one, to a key under PREFIX (every key without one), in the order it applied them, printed as one
JSON line {"position", "feed", "key", "origin", "dot", "versions"} each. The watch reconnects by itself when
the stream breaks and resumes after the last position printed. Use --after with a line's position (and --feed
with its feed) to resume a watch that was stopped. It ends with status 0 when interrupted (SIGINT, SIGTERM),
and with status 1 when the region no longer keeps the changes after --after (position_gone: re-read the keys
you follow, then watch again from now) or the position belongs to another feed.`,
		Example: `  geogate watch user/ --url http://127.0.0.1:7101
  geogate watch --after 1200 --feed us-east~1a2b3c4d --url http://127.0.0.1:7101`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var opts []client.WatchOption
			if cmd.Flags().Changed("after") {
				if after < 0 {
					return fmt.Errorf("--after %d: a position is a whole number from a printed line's \"position\"", after)
				}
				opts = append(opts, client.ResumeAfter(feed, uint64(after)))
			} else if feed != "" {
				return errors.New("--feed goes with --after: the feed a position belongs to")
			}
			if idle > 0 {
				opts = append(opts, client.WatchIdleTimeout(idle))
			}
			out := cmd.OutOrStdout()
			for ch, err := range c.Watch(ctx, prefix, opts...) {
				if err != nil {
					if ctx.Err() != nil {
						return nil // interrupted: a normal end
					}
					return f.explain(err)
				}
				if err := printJSON(out, ch); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().Int64Var(&after, "after", 0, "resume after this position (a printed line's \"position\"): every change after it, none before")
	cmd.Flags().StringVar(&feed, "feed", "", "with --after: the feed the position belongs to (a printed line's \"feed\"); the watch refuses another region's")
	cmd.Flags().DurationVar(&idle, "idle-timeout", 0, "reconnect when no data (not even a heartbeat) arrives for this long (default 30s)")
	return cmd
}
