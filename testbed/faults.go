package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/testbed/diskfault"
	"github.com/geogate/geogate/topology"
)

// FaultEvent is one fault action as it happened, for the report's timeline.
type FaultEvent struct {
	// At is when the action ran, from the start of the workload.
	At time.Duration `json:"at"`
	// Fault describes the fault ("partition a/b").
	Fault string `json:"fault"`
	// Action is "start" or "end".
	Action string `json:"action"`
	// Took is how long the action took (a restart takes a while).
	Took time.Duration `json:"took"`
	// Err is the action's error, if it failed.
	Err string `json:"error,omitempty"`
	// Detail says what the action did, when there is more to say (the
	// records a corrupt fault damaged, the snapshot a backup took).
	Detail string `json:"detail,omitempty"`
}

// faults runs a scenario's fault timeline against a deployment and its
// network, and undoes whatever is still in force when asked.
type faults struct {
	sc    *Scenario
	plan  *topology.Plan
	dep   deployment
	net   *network
	api   *apiClient
	log   *slog.Logger
	start time.Time
	// life is the run's context: regions restarted by a fault live in it,
	// past the end of the timeline.
	life context.Context

	// dataDir holds the regions' data directories (dataDir/<region>).
	dataDir string
	// backupDir holds the snapshots backup faults take (backups: the
	// latest per region); seed seeds corrupt faults.
	backupDir string
	backups   map[string]string
	seed      uint64
	// damaged counts the records corrupt faults damaged, per region.
	damaged map[string]int

	mu     sync.Mutex
	events []FaultEvent
	active map[int]bool // faults started and not ended
	latest string
	// ballast releases the ballast files of disk_full faults in force.
	ballast map[int]func() error
	detail  string // set by the action running, for its event
	// struck are the nodes each kill or freeze in force resolved its
	// target to when it started (they are restarted or resumed).
	struck map[int][]string
	// probe sends one probe write to a node (workload.probe).
	probe func(ctx context.Context, region, node, key string, timeout time.Duration) (AckedWrite, bool)
	// watches are the failover watches by fault.
	watches map[int]*failoverWatch
	// failovers are the faults that struck a region's leader, with the
	// watch for its successor.
	failovers []*failoverWatch
}

// failoverWatch follows one failover: a fault struck the leader of a
// region of several nodes; the watch polls the region's other nodes until
// one of them leads, and probes them with writes until one is
// acknowledged by another node than the old leader.
type failoverWatch struct {
	Failover
	index   int           // the fault's
	start   time.Time     // when the fault struck
	elected chan struct{} // closed once another node leads, or the watch gave up
	thawed  chan struct{} // closed when a frozen old leader is resumed
}

// Failover is one loss of a region's leader and what followed: when the
// fault struck, when a status first showed another node leading, and when
// another node first acknowledged a write (FailoverSeconds, the report's
// failover_seconds).
type Failover struct {
	// Region lost its leader Old to Fault, At after the workload started.
	Region string        `json:"region"`
	Fault  string        `json:"fault"`
	Old    string        `json:"old_leader"`
	At     time.Duration `json:"at"`
	// New is the node that led next, by its status (empty if none did
	// within the watch's bound, a minute); ElectedSeconds is the time
	// from the fault to the first status of a surviving node showing it
	// leading (polled every 50 ms) and Term its term.
	New            string  `json:"new_leader,omitempty"`
	ElectedSeconds float64 `json:"elected_seconds,omitempty"`
	Term           uint64  `json:"term,omitempty"`
	// FailoverSeconds is the time from the fault to the first probe write
	// acknowledged by a node of the region other than Old (by the time
	// its answer arrived); FirstAck is that write's id and Probes the
	// probe writes sent. From the fault on, the testbed sends a probe
	// write to every surviving node of the region every 100 ms (each
	// bounded by 2 s, several in flight, so that one stuck behind the old
	// leader does not hold the next back), besides the workload. Zero,
	// with FirstAck empty, when no probe was acknowledged within a minute.
	FailoverSeconds float64 `json:"failover_seconds"`
	FirstAck        string  `json:"first_ack,omitempty"`
	Probes          int     `json:"probes"`
	// OldProbes are the writes sent to a frozen old leader itself while
	// it is frozen (one every 200 ms, each waiting up to 30 s: they wait
	// in its sockets) and for a second after it is resumed: what a
	// deposed leader that believes it still leads receives. OldAcked of
	// them were acknowledged, by it or by the node it forwarded them to;
	// the deposed_leader and dots checks judge those.
	OldProbes int `json:"old_leader_probes,omitempty"`
	OldAcked  int `json:"old_leader_probes_acked,omitempty"`
}

// failoverWatchFor bounds the wait for a successor.
const failoverWatchFor = time.Minute

func newFaults(life context.Context, sc *Scenario, plan *topology.Plan, dep deployment, net *network, api *apiClient, log *slog.Logger, dataDir string) *faults {
	return &faults{life: life, sc: sc, plan: plan, dep: dep, net: net, api: api, log: log, active: map[int]bool{},
		dataDir: dataDir, ballast: map[int]func() error{}, backups: map[string]string{}, damaged: map[string]int{},
		struck: map[int][]string{}, watches: map[int]*failoverWatch{}}
}

type faultAction struct {
	at    time.Duration
	index int
	start bool
}

// run applies the timeline from start until ctx ends (the end of the
// workload). Actions run one at a time in time order (a start before an end
// at the same instant); each runs to completion in the run's context.
func (f *faults) run(ctx context.Context, start time.Time) {
	f.start = start
	var actions []faultAction
	for i, ft := range f.sc.Faults {
		actions = append(actions, faultAction{at: ft.At, index: i, start: true})
		if ft.For > 0 {
			actions = append(actions, faultAction{at: ft.At + ft.For, index: i})
		}
	}
	slices.SortStableFunc(actions, func(a, b faultAction) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		if a.start != b.start {
			if a.start {
				return -1
			}
			return 1
		}
		return 0
	})
	for _, a := range actions {
		t := time.NewTimer(time.Until(start.Add(a.at)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if a.start {
			f.begin(a.index)
		} else {
			f.end(a.index)
		}
	}
}

// undo ends every fault still in force, except clock skews meant to last
// the whole run (For 0): heals cuts, resumes links, restarts killed regions.
func (f *faults) undo() {
	f.mu.Lock()
	var open []int
	for i := range f.active {
		if f.sc.Faults[i].Kind() != "skew" || f.sc.Faults[i].For > 0 {
			open = append(open, i)
		}
	}
	f.mu.Unlock()
	slices.Sort(open)
	for _, i := range open {
		f.end(i)
	}
}

// timeline returns the actions taken so far.
func (f *faults) timeline() []FaultEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// current describes the latest action, for progress.
func (f *faults) current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest
}

func (f *faults) begin(i int) {
	f.mu.Lock()
	if k := f.sc.Faults[i].Kind(); k != "corrupt" && k != "backup" { // instantaneous: nothing to undo
		f.active[i] = true
	}
	f.mu.Unlock()
	f.act(i, "start", func() error { return f.apply(f.life, i, true) })
}

func (f *faults) end(i int) {
	f.mu.Lock()
	if !f.active[i] {
		f.mu.Unlock()
		return
	}
	delete(f.active, i)
	f.mu.Unlock()
	f.act(i, "end", func() error { return f.apply(f.life, i, false) })
}

func (f *faults) act(i int, action string, do func() error) {
	ft := f.sc.Faults[i]
	t0 := time.Now()
	err := do()
	f.mu.Lock()
	detail := f.detail
	f.detail = ""
	f.mu.Unlock()
	ev := FaultEvent{At: t0.Sub(f.start), Fault: ft.String(), Action: action, Took: time.Since(t0), Detail: detail}
	if err != nil {
		ev.Err = err.Error()
		f.log.Error("fault action failed", "fault", ft.String(), "action", action, "err", err)
	} else {
		f.log.Info("fault", "fault", ft.String(), "action", action, "took", ev.Took)
	}
	f.mu.Lock()
	f.events = append(f.events, ev)
	f.latest = action + " " + ft.String()
	f.mu.Unlock()
}

func (f *faults) setDetail(d string) {
	f.mu.Lock()
	f.detail = d
	f.mu.Unlock()
}

// damagedRecords returns the records corrupt faults damaged, per region.
func (f *faults) damagedRecords() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for r, n := range f.damaged {
		out[r] = n
	}
	return out
}

// linksBetween returns the plan's links between two regions, both ways.
func (f *faults) linksBetween(a, b string) []topology.Link {
	var out []topology.Link
	for _, l := range f.plan.Links() {
		if (l.From == a && l.To == b) || (l.From == b && l.To == a) {
			out = append(out, l)
		}
	}
	return out
}

// linksOf returns every link to or from a region.
func (f *faults) linksOf(r string) []topology.Link {
	return slices.Concat(f.plan.Inbound(r), f.plan.Outbound(r))
}

// apply starts (on) or ends (!on) one fault.
func (f *faults) apply(ctx context.Context, i int, on bool) error {
	ft := f.sc.Faults[i]
	cut := func(links []topology.Link) error {
		for _, l := range links {
			if on {
				f.net.cut(l.From, l.To)
			} else {
				f.net.uncut(l.From, l.To)
			}
		}
		return nil
	}
	switch ft.Kind() {
	case "partition":
		return cut(f.linksBetween(ft.Partition[0], ft.Partition[1]))
	case "cut":
		from, to, _ := strings.Cut(ft.Cut, "->")
		return cut([]topology.Link{{From: from, To: to}})
	case "isolate":
		return cut(f.linksOf(ft.Isolate))
	case "kill":
		if on {
			nodes, err := f.strike(ctx, i, ft.Kill, func(n string) error { return f.dep.kill(ctx, n) })
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if ft.Wipe {
					if err := f.dep.wipe(n); err != nil {
						return err
					}
				}
			}
			return nil
		}
		nodes := f.struckNodes(i)
		if ft.Restore {
			file := f.backups[ft.Kill]
			if file == "" {
				return fmt.Errorf("no backup of %s to restore", ft.Kill)
			}
			if err := f.dep.restore(ctx, ft.Kill, file); err != nil {
				return err
			}
			f.setDetail("restored from " + filepath.Base(file))
		}
		var errs []error
		for _, n := range nodes {
			errs = append(errs, f.dep.restart(ctx, n))
		}
		return errors.Join(errs...)
	case "freeze":
		if on {
			_, err := f.strike(ctx, i, ft.Freeze, f.dep.freeze)
			return err
		}
		nodes := f.struckNodes(i)
		if ft.UntilReplaced {
			if w := f.watchOf(i); w != nil {
				<-w.elected
				if w.New == "" {
					f.setDetail("no other node led within " + failoverWatchFor.String())
				} else {
					f.setDetail(fmt.Sprintf("%s led from %.2fs after the freeze", w.New, w.ElectedSeconds))
				}
			}
		}
		var errs []error
		for _, n := range nodes {
			errs = append(errs, f.dep.thaw(n))
		}
		if w := f.watchOf(i); w != nil {
			close(w.thawed)
		}
		return errors.Join(errs...)
	case "corrupt":
		r := ft.Corrupt.Region
		if err := f.dep.kill(ctx, r); err != nil {
			return err
		}
		rep, err := f.dep.tamper(r, ft.Corrupt.Keys, f.seed+uint64(len(f.events)))
		if rerr := f.dep.restart(ctx, r); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.damaged[r] += len(rep.Removed) + len(rep.Altered)
		f.mu.Unlock()
		f.setDetail(fmt.Sprintf("removed %d and altered %d records of %s", len(rep.Removed), len(rep.Altered), r))
		return nil
	case "backup":
		file := filepath.Join(f.backupDir, fmt.Sprintf("%s-%d.geosnap", ft.Backup, len(f.events)))
		n, err := f.api.snapshot(ctx, ft.Backup, file)
		if err != nil {
			return err
		}
		f.backups[ft.Backup] = file
		f.setDetail(fmt.Sprintf("%d records of %s", n, ft.Backup))
		return nil
	case "pause":
		action := "resume"
		if on {
			action = "pause"
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return f.api.linkAdmin(actx, ft.Pause.Region, ft.Pause.From, action)
	case "skew":
		by := ft.Skew.By
		if !on {
			by = 0
		}
		return f.dep.setSkew(ft.Skew.Region, by)
	case "disk_full":
		if !on {
			f.mu.Lock()
			release := f.ballast[i]
			delete(f.ballast, i)
			f.mu.Unlock()
			if release == nil {
				return nil
			}
			return release()
		}
		release, err := diskfault.Fill(filepath.Join(f.dataDir, ft.DiskFull.Region), DiskFullMinFree/2)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.ballast[i] = release
		f.mu.Unlock()
		return nil
	case "degrade":
		from, to, _ := strings.Cut(ft.Degrade.Link, "->")
		if on {
			s := ft.Degrade.Profile.Shape()
			f.net.setShape(from, to, &s)
		} else {
			f.net.setShape(from, to, nil)
		}
		return nil
	}
	return fmt.Errorf("unknown fault %q", ft.Kind())
}

// strike resolves fault i's target to nodes (a region's, one node, or the
// node leading or following a region now), remembers them for the fault's
// end, and applies do to each. A fault that strikes a region's leader
// starts a failover watch. The event's detail names the nodes.
func (f *faults) strike(ctx context.Context, i int, target string, do func(node string) error) ([]string, error) {
	region, sel, err := f.sc.Target(target)
	if err != nil {
		return nil, err
	}
	var nodes []string
	var leader string
	var term uint64
	switch sel {
	case "":
		nodes = f.sc.NodeNames(region)
	case TargetLeader, TargetFollower:
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		sts, err := f.settledStatuses(rctx, region)
		cancel()
		if err != nil {
			return nil, err
		}
		leader = leaderAmong(sts)
		term = sts[leader].Term
		node := leader
		if sel == TargetFollower {
			for _, n := range f.sc.NodeNames(region) {
				if n != leader {
					node = n
					break
				}
			}
		}
		nodes = []string{node}
	default:
		nodes = []string{sel}
	}
	if f.sc.NodesIn(region) > 1 && leader == "" {
		// A node or the whole region named: is the leader among them?
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		sts := f.nodeStatuses(rctx, f.sc.NodeNames(region))
		cancel()
		leader = leaderAmong(sts)
		term = sts[leader].Term
	}
	f.mu.Lock()
	f.struck[i] = nodes
	f.mu.Unlock()
	if leader != "" && slices.Contains(nodes, leader) && len(nodes) < f.sc.NodesIn(region) {
		w := &failoverWatch{Failover: Failover{Region: region, Fault: f.sc.Faults[i].String(), Old: leader, At: time.Since(f.start)},
			index: i, start: time.Now(), elected: make(chan struct{}), thawed: make(chan struct{})}
		f.mu.Lock()
		f.failovers = append(f.failovers, w)
		f.watches[i] = w
		f.mu.Unlock()
		go f.watch(w)
		go f.probeFailover(w)
		if f.sc.Faults[i].Kind() == "freeze" {
			go f.probeFrozen(w)
		}
	}
	var errs []error
	for _, n := range nodes {
		errs = append(errs, do(n))
	}
	detail := strings.Join(nodes, ", ")
	if leader != "" {
		detail += fmt.Sprintf(" (%s led, term %d)", leader, term)
	}
	f.setDetail(detail)
	return nodes, errors.Join(errs...)
}

func (f *faults) struckNodes(i int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.struck[i]
}

func (f *faults) watchOf(i int) *failoverWatch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watches[i]
}

// watch polls the region's nodes other than the old leader until one of
// them leads, as they all agree, then records when and who.
func (f *faults) watch(w *failoverWatch) {
	defer close(w.elected)
	var others []string
	for _, n := range f.sc.NodeNames(w.Region) {
		if n != w.Old {
			others = append(others, n)
		}
	}
	deadline := w.start.Add(failoverWatchFor)
	for time.Now().Before(deadline) && f.life.Err() == nil {
		ctx, cancel := context.WithTimeout(f.life, time.Second)
		sts := f.nodeStatuses(ctx, others)
		cancel()
		if l := leaderAmong(sts); l != "" {
			f.mu.Lock()
			w.New, w.Term, w.ElectedSeconds = l, sts[l].Term, time.Since(w.start).Seconds()
			f.mu.Unlock()
			f.log.Info("failover", "region", w.Region, "old", w.Old, "new", l, "term", sts[l].Term, "after", time.Since(w.start))
			return
		}
		if wait.Sleep(f.life, 50*time.Millisecond) != nil {
			return
		}
	}
	f.log.Warn("no other node took the lead", "region", w.Region, "old", w.Old, "within", failoverWatchFor)
}

// probeFailover sends probe writes to every node of the region but the
// old leader, a new one to each every probeEvery (each bounded by
// probeTimeout, several in flight: one held up behind the old leader does
// not hold the next back), until one is acknowledged by another node than
// the old leader; it records when.
func (f *faults) probeFailover(w *failoverWatch) {
	if f.probe == nil {
		return
	}
	ctx, cancel := context.WithTimeout(f.life, failoverWatchFor)
	defer cancel()
	var wg sync.WaitGroup
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for k := 0; ; k++ {
		for _, n := range f.sc.NodeNames(w.Region) {
			if n == w.Old {
				continue
			}
			f.mu.Lock()
			w.Probes++
			f.mu.Unlock()
			key := fmt.Sprintf("%sfailover/%d/%s/%d", f.sc.Workload.KeyPrefix, w.index, n, k)
			wg.Go(func() {
				a, ok := f.probe(ctx, w.Region, n, key, probeTimeout)
				if !ok || a.Node == "" || a.Node == w.Old {
					return
				}
				f.mu.Lock()
				if w.FirstAck == "" {
					w.FirstAck, w.FailoverSeconds = a.ID, time.Since(w.start).Seconds()
					f.log.Info("failover: a write acknowledged", "region", w.Region, "by", a.Node, "after", time.Since(w.start))
				}
				f.mu.Unlock()
				cancel()
			})
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
	}
}

// probeFrozen sends writes to the frozen old leader itself, one every
// 200 ms while it is frozen and for a second after it is resumed, each
// waiting up to 30 s: they reach it, in order, the moment it resumes,
// still believing it leads.
func (f *faults) probeFrozen(w *failoverWatch) {
	if f.probe == nil {
		return
	}
	ctx, cancel := context.WithTimeout(f.life, failoverWatchFor)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var after <-chan time.Time
	thawed := w.thawed
	for k := 0; ; k++ {
		f.mu.Lock()
		w.OldProbes++
		f.mu.Unlock()
		key := fmt.Sprintf("%sdeposed/%d/%d", f.sc.Workload.KeyPrefix, w.index, k)
		wg.Go(func() {
			if _, ok := f.probe(ctx, w.Region, w.Old, key, 30*time.Second); ok {
				f.mu.Lock()
				w.OldAcked++
				f.mu.Unlock()
			}
		})
		select {
		case <-ctx.Done():
			return
		case <-thawed:
			thawed, after = nil, time.After(time.Second)
		case <-after:
			return
		case <-t.C:
		}
	}
}

// Failover probes: one to each surviving node every probeEvery, each
// bounded by probeTimeout.
const (
	probeEvery   = 100 * time.Millisecond
	probeTimeout = 2 * time.Second
)

// failoversSeen returns the failovers so far.
func (f *faults) failoversSeen() []Failover {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Failover, len(f.failovers))
	for i, w := range f.failovers {
		out[i] = w.Failover
	}
	return out
}

// nodeStatuses reads the status of each node that answers.
func (f *faults) nodeStatuses(ctx context.Context, nodes []string) map[string]client.Status {
	return f.api.statuses(ctx, nodes)
}

// settledStatuses polls a region of several nodes until one leads, as every
// running node agrees, and returns their statuses.
func (f *faults) settledStatuses(ctx context.Context, region string) (map[string]client.Status, error) {
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		sts := f.nodeStatuses(pctx, f.sc.NodeNames(region))
		cancel()
		if leaderAmong(sts) != "" {
			return sts, nil
		}
		if err := wait.Sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, fmt.Errorf("no node of %s leads: %w", region, err)
		}
	}
}
