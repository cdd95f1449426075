package store

import "time"

// Commit pacing. A synced commit costs the same whatever it holds: Badger
// syncs its write-ahead log and its value log (two device flushes) and the
// pages the next commit writes fault again, about 0.1 ms of CPU and 0.3 ms
// of wall time on the development machine, as much as the rest of a small
// write. Back to back, each commit takes only what queued during the one
// before, so under concurrent load the region spends much of its CPU on
// flushes. The writer therefore lets the next commit start no sooner than
// one commit's duration after the previous one ended (at most
// maxPaceDelay), and only when that commit had company: it answered
// several requests, or more were queued when it ended. Batches then hold
// what queued over two commit durations, not one. A lone writer, a lone
// link applying batches, and any store without Options.Sync commit back to
// back as before: no request waits on a pace it does not share with
// another.

// maxPaceDelay bounds how long a commit waits for company.
const maxPaceDelay = time.Millisecond

// pacer remembers the last commit, for the next one's delay. The writer's.
type pacer struct {
	// start and end of the last commit, and whether it had company.
	start, end time.Time
	company    bool
}

// committed records a commit that ran from start to end; company says
// whether others shared it (and whether it was synced).
func (p *pacer) committed(start, end time.Time, company bool) {
	p.start, p.end, p.company = start, end, company
}

// delay returns how long the next commit should wait at now: until one
// commit duration after the last one ended, capped at maxPaceDelay, when
// the last one had company; else 0.
func (p *pacer) delay(now time.Time) time.Duration {
	if !p.company {
		return 0
	}
	d := p.end.Add(p.end.Sub(p.start)).Sub(now)
	return min(max(d, 0), maxPaceDelay)
}
