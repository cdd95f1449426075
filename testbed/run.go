package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/testbed/diskfault"
	"github.com/geogate/geogate/testbed/wan"
	"github.com/geogate/geogate/topology"
	"github.com/geogate/geogate/topology/link"
)

// RunOptions are a run's settings beyond its scenario.
type RunOptions struct {
	// OutDir, if set, receives the report (see WriteReport), the acked
	// writes (acked.jsonl), the testbed's log (testbed.log) and, in process
	// mode, each region's output (<region>.log).
	OutDir string
	// DataDir holds the regions' data; default a temporary directory,
	// removed after the run unless KeepData.
	DataDir  string
	KeepData bool
	// Binary is the geogate executable process mode runs (see
	// BuildBinary); required for process mode.
	Binary string
	// Logger receives the testbed's and the in-process regions' logs.
	// Default: OutDir/testbed.log at info level, or nothing without OutDir.
	Logger *slog.Logger
	// Progress, if set, is called about four times a second and once per
	// phase change, from one goroutine at a time.
	Progress func(Progress)
	// SampleEvery is the lag sampling period (default 250ms).
	SampleEvery time.Duration
}

// Progress is a run's state for a progress display.
type Progress struct {
	// Phase is starting, running, quiescing, checking or done.
	Phase string
	// Elapsed is the time since the workload started (0 while starting);
	// Duration is the workload's planned length.
	Elapsed, Duration time.Duration
	// Ops, Acked and Errors count operations, acknowledged writes and
	// failed writes so far.
	Ops, Acked, Errors uint64
	// Fault is the latest fault action ("start partition a/b").
	Fault string
}

// Phases of a run, in order.
const (
	PhaseStarting  = "starting"
	PhaseRunning   = "running"
	PhaseQuiescing = "quiescing"
	PhaseChecking  = "checking"
	PhaseDone      = "done"
)

// Report is the outcome of a run: what was run, what happened and the
// checkers' verdicts. Pass is true when every check passed.
type Report struct {
	Scenario    string   `json:"scenario"`
	Description string   `json:"description,omitempty"`
	Source      string   `json:"source,omitempty"`
	Short       bool     `json:"short"`
	Mode        Mode     `json:"mode"`
	Security    bool     `json:"security,omitempty"` // the regions ran secured (security: true)
	Regions     []string `json:"regions"`
	// Nodes names each region's nodes when some region has several (the
	// digests, records and conflicts are then by node).
	Nodes    map[string][]string `json:"nodes,omitempty"`
	Topology string              `json:"topology"`
	Links    []string            `json:"links"`
	Started  time.Time           `json:"started"`
	Duration time.Duration       `json:"duration"`
	// Elapsed is the whole run, start-up to checks.
	Elapsed time.Duration `json:"elapsed"`
	// Quiesced is how long the regions took to converge after the workload
	// and faults ended; QuiesceTimedOut is set when they did not within the
	// scenario's bound.
	Quiesced        time.Duration `json:"quiesced"`
	QuiesceTimedOut bool          `json:"quiesce_timed_out,omitempty"`

	Pass   bool          `json:"pass"`
	Checks []CheckResult `json:"checks"`

	Workload   WorkloadStats             `json:"workload"`
	LostWrites LostWriteStats            `json:"lost_writes"`
	Lag        map[string]Percentiles    `json:"lag_seconds"`
	Conflicts  map[string]map[string]int `json:"conflicts_by_rule"`
	Faults     []FaultEvent              `json:"faults"`
	Digests    map[string]string         `json:"digests"`
	Records    map[string]int            `json:"records"`
	WAN        map[string]wan.Stats      `json:"wan"`
	// LagSamples are every lag reading, for the plots.
	LagSamples []LagSample `json:"lag_samples"`

	// Lifecycle is what each region's lifecycle did (anti-entropy repairs,
	// re-seeds, tombstones collected), read after quiescence.
	Lifecycle map[string]LifecycleStats `json:"lifecycle,omitempty"`

	// Failovers are the faults that struck a region's leader (a region of
	// several nodes) and what followed; FailoverSeconds is the longest
	// of their failover_seconds: from the fault to the first write of the
	// workload that another node of the region acknowledged.
	Failovers       []Failover `json:"failovers,omitempty"`
	FailoverSeconds float64    `json:"failover_seconds,omitempty"`
}

// units returns the report's nodes in order: region by region, each
// region's nodes (a region of one node is itself).
func (rep *Report) units() []string {
	var out []string
	for _, r := range rep.Regions {
		if ns := rep.Nodes[r]; len(ns) > 0 {
			out = append(out, ns...)
		} else {
			out = append(out, r)
		}
	}
	return out
}

// Run runs a scenario: it starts the regions behind an emulated WAN, waits
// for every link to come up, runs the workload and the fault timeline for
// the scenario's duration, undoes the faults, waits for quiescence, reads
// every region's final state and runs the checks. It returns an error only
// when the run could not be carried out (regions did not start, ...); a
// failed check is a Report with Pass false. With OutDir set the report is
// written there, pass or fail.
func Run(ctx context.Context, sc *Scenario, opts RunOptions) (rep *Report, err error) {
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	if opts.SampleEvery <= 0 {
		opts.SampleEvery = 250 * time.Millisecond
	}
	if opts.OutDir != "" {
		if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
			return nil, fmt.Errorf("report dir: %w", err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		if opts.OutDir != "" {
			f, err := os.Create(filepath.Join(opts.OutDir, "testbed.log"))
			if err != nil {
				return nil, fmt.Errorf("testbed log: %w", err)
			}
			defer f.Close()
			log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
	}
	dataDir := opts.DataDir
	if dataDir == "" {
		if dataDir, err = os.MkdirTemp("", "geogate-testbed-"); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		if !opts.KeepData {
			defer os.RemoveAll(dataDir)
		}
	}
	r := &runner{sc: sc, opts: opts, log: log.With("scenario", sc.Name), dataDir: dataDir}
	return r.run(ctx)
}

type runner struct {
	sc      *Scenario
	opts    RunOptions
	log     *slog.Logger
	dataDir string

	progressMu sync.Mutex
}

func (r *runner) progress(p Progress) {
	if r.opts.Progress == nil {
		return
	}
	r.progressMu.Lock()
	defer r.progressMu.Unlock()
	p.Duration = r.sc.Duration
	r.opts.Progress(p)
}

func (r *runner) run(ctx context.Context) (*Report, error) {
	sc := r.sc
	began := time.Now()
	r.progress(Progress{Phase: PhaseStarting})
	plan, err := topology.New(sc.Regions, sc.Topology)
	if err != nil {
		return nil, err
	}
	var linkNames []string
	for _, l := range plan.Links() {
		linkNames = append(linkNames, l.String())
	}
	seed := sc.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}

	life, cancel := context.WithCancel(ctx)
	defer cancel()
	net := newNetwork(sc.Links, seed, r.log.With("component", "wan"))
	defer net.close()
	sec, err := securityMaterial(sc, filepath.Join(r.dataDir, "_secrets")) // not a region name
	if err != nil {
		return nil, err
	}
	// A region a disk_full fault fills gets a small disk of its own,
	// unmounted after the regions closed (deferred first, runs last).
	for _, region := range sc.DiskFullRegions() {
		dir := filepath.Join(r.dataDir, region)
		unmount, err := diskfault.MountTmpfs(dir, DiskFullSize)
		if err != nil {
			return nil, fmt.Errorf("disk_full fault: a small disk for %s: %w", region, err)
		}
		defer func() {
			if err := unmount(); err != nil {
				r.log.Warn("unmount the small disk", "region", region, "err", err)
			}
		}()
	}
	var dep deployment
	switch sc.Mode {
	case Process:
		logDir := r.opts.OutDir
		if logDir == "" {
			logDir = r.dataDir
		}
		dep, err = startProcesses(life, sc, plan, r.dataDir, logDir, r.opts.Binary, net, r.log, sec)
	default:
		dep, err = startInProcess(life, sc, r.dataDir, net, r.log, sec)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := dep.close(); err != nil {
			r.log.Warn("closing regions", "err", err)
		}
	}()
	api, err := newAPIClient(dep.urls(), sc.Layout(), sc.Workload.Timeout, sc.Workload.Concurrency, sec)
	if err != nil {
		return nil, err
	}
	defer api.close()

	if err := r.waitReady(life, api, plan); err != nil {
		return nil, err
	}

	// The workload, the fault timeline and the lag sampler share one clock:
	// the workload's start.
	start := time.Now()
	sampler := newLagSampler(api, sc.AllNodes(), start, r.opts.SampleEvery)
	sampleCtx, stopSampling := context.WithCancel(life)
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() { defer sampling.Done(); sampler.run(sampleCtx) }()

	work := newWorkload(sc.Workload, sc.Regions, api, seed, start)
	flt := newFaults(life, sc, plan, dep, net, api, r.log, r.dataDir)
	flt.backupDir, flt.seed = filepath.Join(r.dataDir, "_backups"), seed // not a region name
	flt.probe = work.probe
	workCtx, stopWork := context.WithTimeout(life, sc.Duration)
	defer stopWork()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); work.run(workCtx) }()
	go func() { defer wg.Done(); flt.run(workCtx, start) }()
	r.tick(workCtx, PhaseRunning, start, work, flt)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		stopSampling()
		sampling.Wait()
		return nil, fmt.Errorf("run interrupted: %w", err)
	}

	// Undo every fault, then wait for the regions to agree.
	ops, ackedN, errs := work.progress()
	r.progress(Progress{Phase: PhaseQuiescing, Elapsed: time.Since(start), Ops: ops, Acked: ackedN, Errors: errs})
	flt.undo()
	qStart := time.Now()
	quiet, final := r.waitQuiescent(life, api, dep, work, start)
	timedOut := !quiet
	quiesced := time.Since(qStart)
	stopSampling()
	sampling.Wait()
	lifecycle := map[string]LifecycleStats{}
	damaged := flt.damagedRecords()
	for _, region := range sc.Regions {
		l, err := api.lifecycle(life, region)
		if err != nil {
			r.log.Warn("lifecycle status", "region", region, "err", err)
		}
		l.Damaged = damaged[region]
		lifecycle[region] = l
	}

	r.progress(Progress{Phase: PhaseChecking, Elapsed: time.Since(start), Ops: ops, Acked: ackedN, Errors: errs})
	states, err := dep.finalStates(life)
	if err != nil {
		return nil, fmt.Errorf("read final state: %w", err)
	}
	acked, sessions, stats := work.results()
	samples := sampler.samples()
	rep := &Report{
		Scenario: sc.Name, Description: sc.Description, Source: sc.Source, Short: sc.IsShort, Mode: sc.Mode, Security: sc.Security,
		Regions: sc.Regions, Topology: plan.Describe(), Links: linkNames, Started: began, Duration: sc.Duration,
		Quiesced: quiesced, QuiesceTimedOut: timedOut, Workload: stats, Faults: flt.timeline(),
		Lag: LagByLink(samples), Conflicts: ConflictsByRule(states), WAN: net.stats(), LagSamples: samples,
		Digests: map[string]string{}, Records: map[string]int{}, Lifecycle: lifecycle,
	}
	if sc.Clustered() {
		rep.Nodes = sc.Layout()
	}
	rep.Failovers = flt.failoversSeen()
	for _, fo := range rep.Failovers {
		rep.FailoverSeconds = max(rep.FailoverSeconds, fo.FailoverSeconds)
	}
	for _, s := range states {
		rep.Digests[s.Region] = fmt.Sprintf("%x", s.Digest)
		rep.Records[s.Region] = len(s.Records)
	}
	rep.Checks = evaluate(sc, acked, sessions, stats, states, rep, linkNames, final)
	rep.Pass = true
	for _, c := range rep.Checks {
		rep.Pass = rep.Pass && c.Pass
	}
	rep.Elapsed = time.Since(began)
	if r.opts.OutDir != "" {
		if err := WriteReport(r.opts.OutDir, rep); err != nil {
			return rep, err
		}
		if err := writeAcked(filepath.Join(r.opts.OutDir, "acked.jsonl"), acked); err != nil {
			return rep, err
		}
	}
	r.progress(Progress{Phase: PhaseDone, Elapsed: time.Since(start), Ops: stats.Ops, Acked: stats.Acked, Errors: failed(stats)})
	return rep, nil
}

func failed(s WorkloadStats) uint64 {
	n := uint64(0)
	for _, v := range s.WriteErrors {
		n += uint64(v)
	}
	return n
}

// evaluate runs every check the scenario asks for.
// final are the nodes' statuses of the last quiescence poll.
func evaluate(sc *Scenario, acked []AckedWrite, sessions []SessionRead, stats WorkloadStats, states []RegionState, rep *Report, links []string, final map[string]client.Status) []CheckResult {
	var out []CheckResult
	c := sc.Checks
	if enabled(c.Convergence) {
		res := CheckConvergence(states)
		if rep.QuiesceTimedOut {
			res.Summary += fmt.Sprintf(" (quiescence timed out after %s)", sc.Quiescence)
		}
		out = append(out, res)
	}
	if enabled(c.LostWrites) {
		res, st := CheckLostWrites(acked, states)
		rep.LostWrites = st
		out = append(out, res)
	}
	out = append(out, CheckDots(acked, states))
	if sc.Clustered() {
		out = append(out, CheckNodes(sc.Layout(), sc.Regions, final))
	}
	if len(rep.Failovers) > 0 || c.Failover != nil {
		out = append(out, CheckFailover(rep.Failovers, c.Failover))
		out = append(out, CheckDeposed(rep.Failovers, acked, sc.Layout()))
	}
	if c.Sessions != nil || sc.Workload.SessionRatio > 0 {
		out = append(out, CheckSessions(sessions, c.Sessions))
	}
	out = append(out, CheckLag(rep.Lag, links, c.Lag))
	out = append(out, CheckConflicts(rep.Conflicts, c.Conflicts))
	out = append(out, CheckWorkload(stats, c)...)
	if c.ClockBound != nil {
		out = append(out, CheckClockBound(acked, *c.ClockBound))
	}
	if c.AntiEntropy != nil {
		out = append(out, CheckAntiEntropy(rep.Lifecycle, *c.AntiEntropy))
	}
	if c.Reseeds != nil {
		out = append(out, CheckReseeds(rep.Lifecycle, *c.Reseeds))
	}
	return out
}

// tick reports progress until ctx ends.
func (r *runner) tick(ctx context.Context, phase string, start time.Time, work *workload, flt *faults) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		ops, acked, errs := work.progress()
		r.progress(Progress{Phase: phase, Elapsed: min(time.Since(start), r.sc.Duration), Ops: ops, Acked: acked, Errors: errs, Fault: flt.current()})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readyTimeout bounds the wait for every region to serve and every link to
// come up before the workload starts.
const readyTimeout = 60 * time.Second

// waitReady polls until every node answers, every region of several
// nodes has one leader every other node follows, and every region (its
// leader) reports all its inbound links up.
func (r *runner) waitReady(ctx context.Context, api *apiClient, plan *topology.Plan) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		last = nil
		for _, region := range r.sc.Regions {
			nodes := r.sc.NodeNames(region)
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			sts := api.statuses(sctx, nodes)
			cancel()
			if len(sts) < len(nodes) {
				last = fmt.Errorf("region %s: %d of %d nodes answer", region, len(sts), len(nodes))
				break
			}
			st := sts[region]
			if len(nodes) > 1 {
				leader, ok := regionSettled(nodes, sts)
				if !ok {
					last = fmt.Errorf("region %s: no leader every node follows yet (%s)", region, rolesText(nodes, sts))
					break
				}
				st = sts[leader]
			}
			up := 0
			for _, l := range st.Links {
				if l.State == link.StateUp {
					up++
				}
			}
			if want := len(plan.Inbound(region)); up < want {
				last = fmt.Errorf("region %s: %d of %d links up", region, up, want)
				break
			}
		}
		if last == nil {
			return nil
		}
		if err := wait.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("regions not ready after %s: %w", readyTimeout, last)
}

// rolesText describes the nodes' roles for a message.
func rolesText(nodes []string, sts map[string]client.Status) string {
	var parts []string
	for _, n := range nodes {
		st, ok := sts[n]
		if !ok {
			parts = append(parts, n+" silent")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s/%s leader %q", n, st.Role, st.NodeState, st.Leader))
	}
	return strings.Join(parts, ", ")
}

// waitQuiescent polls until the regions have exchanged everything: every
// region has applied every other region's log up to its current sequence,
// no outbox holds untrimmed entries, every link is up with nothing pending,
// and every region of several nodes is settled (one leader, every other
// node following it at its position), twice in a row. A scenario that
// damages records or checks anti-entropy also waits until every region
// has run two comparison rounds since the faults ended, the last finding
// nothing different, with no corrupt record left. It reports false when
// the scenario's quiescence bound passed first, and returns the nodes'
// statuses of the last poll.
func (r *runner) waitQuiescent(ctx context.Context, api *apiClient, dep deployment, work *workload, start time.Time) (bool, map[string]client.Status) {
	deadline := time.Now().Add(r.sc.Quiescence)
	streak := 0
	repairs := r.sc.Checks.AntiEntropy != nil || slices.ContainsFunc(r.sc.Faults, func(f Fault) bool { return f.Corrupt != nil })
	since := map[string]int{}
	if repairs {
		for _, region := range r.sc.Regions {
			since[region], _, _, _ = api.aeState(ctx, region)
		}
	}
	var last map[string]client.Status
	for time.Now().Before(deadline) {
		ops, acked, errs := work.progress()
		r.progress(Progress{Phase: PhaseQuiescing, Elapsed: time.Since(start), Ops: ops, Acked: acked, Errors: errs})
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = api.statuses(pctx, r.sc.AllNodes())
		cancel()
		if nodesQuiescent(r.sc.Layout(), r.sc.Regions, last) && (!repairs || repaired(ctx, api, r.sc.Regions, since)) {
			streak++
			if streak >= 2 {
				return true, last
			}
		} else {
			streak = 0
		}
		if wait.Sleep(ctx, 250*time.Millisecond) != nil {
			return false, last
		}
	}
	return false, last
}

// nodesQuiescent reports whether one poll of every node's status (by
// node) shows nothing left to exchange: every region of several nodes
// settled, and the regions (their leaders) quiescent (statusesQuiescent).
func nodesQuiescent(layout map[string][]string, regions []string, sts map[string]client.Status) bool {
	var regionSts []client.Status
	for _, region := range regions {
		nodes := layout[region]
		if len(nodes) < 2 {
			st, ok := sts[region]
			if !ok {
				return false
			}
			regionSts = append(regionSts, st)
			continue
		}
		mine := map[string]client.Status{}
		for _, n := range nodes {
			if st, ok := sts[n]; ok {
				mine[n] = st
			}
		}
		leader, ok := regionSettled(nodes, mine)
		if !ok {
			return false
		}
		regionSts = append(regionSts, mine[leader])
	}
	return statusesQuiescent(regionSts)
}

// repaired reports whether every region has run two anti-entropy rounds
// since the counts in since, the last finding no bucket different, and has
// no corrupt record left.
func repaired(ctx context.Context, api *apiClient, regions []string, since map[string]int) bool {
	for _, region := range regions {
		rounds, differing, corrupt, err := api.aeState(ctx, region)
		if err != nil || rounds < since[region]+2 || differing > 0 || corrupt > 0 {
			return false
		}
	}
	return true
}

// statusesQuiescent is the pure part of quiescent.
func statusesQuiescent(sts []client.Status) bool {
	for _, st := range sts {
		if st.Outbox > 0 {
			return false
		}
		for _, l := range st.Links {
			if l.State != link.StateUp || l.Pending > 0 {
				return false
			}
		}
		for _, other := range sts {
			if other.Actor == "" || other.Seq == 0 {
				continue // has written nothing
			}
			if st.Applied[other.Actor] < other.Seq {
				return false
			}
		}
	}
	return true
}

// lagSampler reads every node's link lag from /v1/status periodically
// (only a region's leader runs its links).
type lagSampler struct {
	api     *apiClient
	regions []string
	start   time.Time
	every   time.Duration

	mu   sync.Mutex
	data []LagSample
}

func newLagSampler(api *apiClient, nodes []string, start time.Time, every time.Duration) *lagSampler {
	return &lagSampler{api: api, regions: nodes, start: start, every: every}
}

// run samples until ctx ends. A node that does not answer (killed,
// frozen) is skipped for that round.
func (s *lagSampler) run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, region := range s.regions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sctx, cancel := context.WithTimeout(ctx, s.every*4)
				defer cancel()
				st, err := s.api.status(sctx, region)
				if err != nil {
					return
				}
				at := time.Since(s.start)
				s.mu.Lock()
				for _, l := range st.Links {
					s.data = append(s.data, LagSample{At: at, Link: linkName(l.From, l.To), Lag: l.LagSeconds, Pending: l.Pending, State: l.State})
				}
				s.mu.Unlock()
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *lagSampler) samples() []LagSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.data)
	slices.SortStableFunc(out, func(a, b LagSample) int { return int(a.At - b.At) })
	return out
}

// errNoBinary is returned for a process-mode run without a binary.
var errNoBinary = errors.New("process mode needs the geogate binary (RunOptions.Binary; see BuildBinary)")
