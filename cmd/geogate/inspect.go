package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/conflict"
)

func newKeys() *cobra.Command {
	var f clientFlags
	var out outputFlag
	var limit int
	cmd := &cobra.Command{
		Use:   "keys [PREFIX]",
		Short: "List a region's live keys (with PREFIX, those under it), in byte order",
		Long: "List the live keys of the region that answers, in byte order, every page of GET /v1/kv; with PREFIX\n" +
			"only the keys that start with it. Deleted keys are not listed.",
		Example: `  geogate keys
  geogate keys cart/ --limit 10 -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (every key) or more", limit)
			}
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return f.withClient(cmd, func(c *client.Client) error {
				keys := []string{}
				for k, err := range c.Keys(cmd.Context(), prefix) {
					if err != nil {
						return f.explain(err)
					}
					if keys = append(keys, k); limit > 0 && len(keys) == limit {
						break
					}
				}
				return out.print(cmd.OutOrStdout(), map[string][]string{"keys": keys}, func(tw io.Writer) {
					for _, k := range keys {
						fmt.Fprintln(tw, k)
					}
				})
			})
		},
	}
	f.register(cmd)
	out.register(cmd, outputTable)
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most this many keys (0: every key)")
	return cmd
}

func newConflicts() *cobra.Command {
	var f clientFlags
	var out outputFlag
	var q client.ConflictQuery
	cmd := &cobra.Command{
		Use:   "conflicts [KEY]",
		Short: "Show a region's conflict log, newest first: the versions rules collapsed away",
		Long: "Show the conflict log of the region that answers (GET /v1/conflicts), newest first, with KEY only that\n" +
			"key's entries: for each the key, the rule, the version it kept and the versions it discarded. A\n" +
			"discarded version is never lost: it is here. (KEY is an argument: --key is the TLS key of --cert.)",
		Example: `  geogate conflicts
  geogate conflicts stock/42 -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				q.Key = args[0]
			}
			if q.Limit < 0 || q.Limit > 10000 {
				return fmt.Errorf("--limit %d: want 1 to 10000 (0: the region's default, 100)", q.Limit)
			}
			return f.withClient(cmd, func(c *client.Client) error {
				entries, err := c.Conflicts(cmd.Context(), q)
				if err != nil {
					return f.explain(err)
				}
				if entries == nil {
					entries = []client.ConflictEntry{}
				}
				return out.print(cmd.OutOrStdout(), map[string][]client.ConflictEntry{"conflicts": entries}, func(tw io.Writer) {
					fmt.Fprintln(tw, "SEQ\tAT\tKEY\tRULE\tREGION\tKEPT\tDISCARDED")
					for _, e := range entries {
						kept := "-"
						if e.Kept != nil {
							kept = e.Kept.Dot.String()
						}
						discarded := make([]string, len(e.Discarded))
						for i, v := range e.Discarded {
							discarded[i] = describeVersion(v)
						}
						if e.Note != "" {
							discarded = append(discarded, "("+e.Note+")")
						}
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, time.UnixMilli(e.At).UTC().Format(time.RFC3339),
							e.Key, e.Rule, e.Region, kept, strings.Join(discarded, " "))
					}
				})
			})
		},
	}
	f.register(cmd)
	out.register(cmd, outputTable)
	cmd.Flags().IntVar(&q.Limit, "limit", 0, "at most this many entries, 1 to 10000 (default: the region's, 100)")
	return cmd
}

// describeVersion names a version by its dot, marking a tombstone.
func describeVersion(v conflict.Version) string {
	if v.Deleted {
		return v.Dot.String() + "(deleted)"
	}
	return v.Dot.String()
}

func newLink() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "link pause|resume PEER",
		Short: "Pause or resume a region's inbound replication link from PEER (admin)",
		Long: "Stop or restart the answering region's pulling from PEER (POST /v1/admin/links/PEER/pause|resume), for\n" +
			"maintenance. The link's durable consumer stays, so nothing is missed: a resumed link catches up. Give\n" +
			"--url of the region meant, and an admin token for a secured one.",
	}
	for _, action := range []string{"pause", "resume"} {
		var f clientFlags
		var out outputFlag
		sub := &cobra.Command{
			Use:     action + " PEER",
			Short:   strings.ToUpper(action[:1]) + action[1:] + " the link that pulls PEER's events into the region at --url",
			Example: "  geogate link " + action + " us-east --url http://127.0.0.1:7102",
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.withClient(cmd, func(c *client.Client) error {
					do := c.PauseLink
					if action == "resume" {
						do = c.ResumeLink
					}
					l, err := do(cmd.Context(), args[0])
					if err != nil {
						return f.explain(err)
					}
					return out.print(cmd.OutOrStdout(), l, func(tw io.Writer) { printLinks(tw, []client.LinkStatus{l}) })
				})
			},
		}
		f.register(sub)
		out.register(sub, outputTable)
		cmd.AddCommand(sub)
	}
	return cmd
}
