package testbed

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// ProgressBar returns a Progress callback that draws a one-line progress
// bar on w, e.g.
//
//	[=========>          ] 12s/30s running  ops 2401  acked 2210  failed 3  start partition a/b
//
// With redraw set (w is a terminal) the line is redrawn in place with a
// carriage return; otherwise a line is printed per phase change and at
// most every 5 seconds, so logs stay readable. The phase "done" ends the
// line.
func ProgressBar(w io.Writer, redraw bool) func(Progress) {
	var lastPhase string
	var lastPrint time.Time
	return func(p Progress) {
		line := progressLine(p, 30)
		switch {
		case redraw:
			fmt.Fprintf(w, "\r%-110s", line)
			if p.Phase == PhaseDone {
				fmt.Fprintln(w)
			}
		case p.Phase != lastPhase || time.Since(lastPrint) >= 5*time.Second:
			fmt.Fprintln(w, line)
			lastPrint = time.Now()
		}
		lastPhase = p.Phase
	}
}

// progressLine renders a progress state with a bar of width cells.
func progressLine(p Progress, width int) string {
	frac := 0.0
	if p.Duration > 0 {
		frac = min(max(float64(p.Elapsed)/float64(p.Duration), 0), 1)
	}
	if p.Phase == PhaseQuiescing || p.Phase == PhaseChecking || p.Phase == PhaseDone {
		frac = 1
	}
	filled := int(frac * float64(width))
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	s := fmt.Sprintf("[%s] %s/%s %-9s ops %d  acked %d  failed %d", bar,
		p.Elapsed.Truncate(time.Second), p.Duration, p.Phase, p.Ops, p.Acked, p.Errors)
	if p.Fault != "" {
		s += "  " + p.Fault
	}
	return s
}
