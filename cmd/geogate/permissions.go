package main

import (
	"fmt"

	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
)

func newPermissions() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "permissions --config FILE",
		Short: "Print the NATS users and permissions of this region's server, derived from the topology plan",
		Long: "Print, as a nats-server authorization block, what each region may do on the NATS server of the config's\n" +
			"region: the owner everything; every other region send home-forwarding requests and receive on its own\n" +
			"inbox; a region that pulls from this one also create, read and ack its own durable consumer and receive\n" +
			"heartbeats. The embedded server enforces exactly these; for an external NATS (nats.url), give the regions'\n" +
			"users these permissions. NKeys come from regions.<name>.nkey (a placeholder when unset).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("config")
			cfg, err := config.Load(path, os.Environ(), cmd.Flags())
			if err != nil {
				return err
			}
			grants, err := gateway.NATSGrants(cfg)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			plan, _ := cfg.Plan()
			fmt.Fprintf(w, "# NATS users of region %s's server, from the topology plan (%s).\n", cfg.Region, plan.Describe())
			fmt.Fprintln(w, "authorization {\n  users = [")
			for _, g := range grants {
				nkey := cfg.Regions[g.User].NKey
				if nkey == "" {
					nkey = "<nkey of " + g.User + ">"
				}
				role := "peer"
				if g.Owner {
					role = "owner: this region's own connections"
				}
				fmt.Fprintf(w, "    # %s (%s)\n    { nkey: %q, permissions: {\n", g.User, role, nkey)
				fmt.Fprintf(w, "        publish: { allow: %s", list(g.PublishAllow))
				if len(g.PublishDeny) > 0 {
					fmt.Fprintf(w, ", deny: %s", list(g.PublishDeny))
				}
				fmt.Fprintf(w, " }\n        subscribe: { allow: %s }\n    } }\n", list(g.SubscribeAllow))
			}
			fmt.Fprintln(w, "  ]\n}")
			return nil
		},
	}
	config.RegisterFlags(cmd.Flags())
	return cmd
}

func list(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
