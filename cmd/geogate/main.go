// Command geogate runs a region of a multi-region, multi-leader replication
// gateway, a local multi-region demo, the testbed, and client verbs. See
// README.md.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		os.Exit(report(os.Stderr, err))
	}
}

// report writes err to w, one line per line of its message (a refused
// config lists each problem on its own line), each starting "geogate: ",
// and returns the exit status: 1, or the error's own (ExitCode; rules
// plan: 2 when something would change).
func report(w io.Writer, err error) int {
	for line := range strings.SplitSeq(strings.TrimSpace(err.Error()), "\n") {
		if line = strings.TrimRight(line, " \t\r"); line != "" {
			fmt.Fprintln(w, "geogate:", line)
		}
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}
