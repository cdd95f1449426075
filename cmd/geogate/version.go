package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/internal/buildinfo"
)

func newVersion() *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print geogate's version, the commit it was built from and the Go version",
		Long: "Print the module version, the VCS revision and time (and whether the tree was modified) and the Go\n" +
			"version the binary was built with, as the Go toolchain recorded them. A running region exports the\n" +
			"same as the labels of geogate_build_info.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := buildinfo.Get()
			return out.print(cmd.OutOrStdout(), bi, func(tw io.Writer) { fmt.Fprintln(tw, "geogate "+bi.String()) })
		},
	}
	out.register(cmd, outputTable)
	return cmd
}
