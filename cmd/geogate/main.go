// Command geogate runs a region of a multi-region, multi-leader replication
// gateway, a local multi-region demo, the testbed, and client verbs. See
// README.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "geogate:", err)
		os.Exit(1)
	}
}
