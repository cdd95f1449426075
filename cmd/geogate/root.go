package main

import (
	"github.com/spf13/cobra"
)

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "geogate",
		Short:         "Multi-region, multi-leader replication gateway for JSON documents",
		Long:          "geogate runs one region of a multi-datacenter deployment: a local leader for JSON documents by key,\nreplicating asynchronously to the other regions over NATS JetStream, with operator-written conflict rules.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServe(), newDemo(), newInit(), newPermissions(), newCert(), newToken(), newPut(), newGet(), newDel(), newStatus(), newWatch(), newKeys(), newConflicts(), newLink(), newVersion(), newBench(), newTestbed(), newRules(),
		newBackup(), newRestore(), newReseed())
	return root
}
