// Command geogate runs a region of a multi-region, multi-leader replication
// gateway, a local multi-region demo, the testbed, and client verbs. See
// README.md.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		// One line: a config with several problems lists them all, joined.
		fmt.Fprintln(os.Stderr, "geogate:", strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))
		code := 1
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			code = ec.ExitCode() // rules plan: 2 when something would change
		}
		os.Exit(code)
	}
}
