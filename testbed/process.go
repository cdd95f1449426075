package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/internal/ports"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology"
)

// BuildBinary builds the geogate command into dir and returns its path. It
// runs `go build`, so it needs the Go toolchain and a working directory
// inside the geogate module (tests have both).
func BuildBinary(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "geogate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/geogate/geogate/cmd/geogate")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build geogate: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// processes runs every node as a `geogate serve --config FILE` child
// process with a generated config (a region of one node is one node named
// after it). Each node's config points its peers' NATS URLs at the WAN
// proxies of its region's inbound links (one proxy per server of the
// peer), so replication crosses the emulated WAN exactly as in process;
// the nodes of a region reach each other directly (their LAN). A kill is
// SIGKILL, a freeze SIGSTOP; a restart runs the same command again on the
// same data directory.
type processes struct {
	bin    string
	log    *slog.Logger
	sec    *deploy.Material // nil: regions not secured
	nodes  []string         // every node, region by region
	region map[string]string
	// clustered marks the nodes of regions of several nodes.
	clustered map[string]bool
	configs   map[string]string // node -> config file
	logs      map[string]string // node -> stdout/stderr file
	data      map[string]string // node -> data_dir
	base      map[string]string // node -> HTTP base URL

	mu     sync.Mutex
	procs  map[string]*child
	frozen map[string]bool
}

type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *os.File
}

var _ deployment = (*processes)(nil)

// startTimeout bounds a node process's start until /healthz answers.
const startTimeout = 30 * time.Second

// startProcesses builds and validates every node's config (nodeConfig)
// before it writes any file or starts any process, so a scenario no node
// can run with fails with the region and key at fault. It then writes each
// node's config into dir, its data under dir/<node> and its output into
// logDir/<node>.log, and starts them all.
func startProcesses(ctx context.Context, sc *Scenario, plan *topology.Plan, dir, logDir, bin string, net *network, log *slog.Logger, sec *deploy.Material) (*processes, error) {
	if bin == "" {
		return nil, errNoBinary
	}
	all := sc.AllNodes()
	// The ports stay held until the WAN proxies below have their own
	// (each takes any free port): released earlier, one could be handed
	// a node's port.
	free, release, err := ports.Hold(3 * len(all))
	if err != nil {
		return nil, err
	}
	defer release()
	addr := map[string]nodeAddrs{}
	for i, n := range all {
		addr[n] = nodeAddrs{HTTP: fmt.Sprintf("127.0.0.1:%d", free[3*i]), NATS: fmt.Sprintf("127.0.0.1:%d", free[3*i+1]),
			Cluster: fmt.Sprintf("127.0.0.1:%d", free[3*i+2])}
	}
	p := &processes{
		bin: bin, log: log, sec: sec, nodes: all, region: map[string]string{}, clustered: map[string]bool{},
		procs: map[string]*child{}, frozen: map[string]bool{},
		configs: map[string]string{}, logs: map[string]string{}, data: map[string]string{}, base: map[string]string{},
	}
	httpAddr := map[string]string{} // region -> its (first node's) client API
	for _, r := range sc.Regions {
		httpAddr[r] = addr[sc.NodeNames(r)[0]].HTTP
	}
	file := map[string][]byte{} // node -> config file contents
	httpScheme, _ := schemes(sec)
	for _, r := range sc.Regions {
		// What region r's nodes dial for each region: the link's proxy of
		// each of its servers when the plan has a link peer -> r, else
		// the servers directly.
		peerNATS := map[string][]string{}
		for _, peer := range sc.Regions {
			for _, m := range sc.NodeNames(peer) {
				target := addr[m].NATS
				if peer != r && plan.HasLink(peer, r) {
					px, err := net.proxy(peer, r, target)
					if err != nil {
						return nil, err
					}
					target = px.Addr()
				}
				peerNATS[peer] = append(peerNATS[peer], target)
			}
		}
		var members map[string]nodeAddrs
		if sc.NodesIn(r) > 1 {
			members = map[string]nodeAddrs{}
			for _, m := range sc.NodeNames(r) {
				members[m] = addr[m]
			}
		}
		for _, n := range sc.NodeNames(r) {
			p.region[n], p.clustered[n] = r, members != nil
			p.base[n] = httpScheme + "://" + addr[n].HTTP
			p.data[n] = filepath.Join(dir, n)
			p.logs[n] = filepath.Join(logDir, n+".log")
			cfg, err := nodeConfig(sc, r, n, regionAddrs{HTTP: httpAddr, PeerNATS: peerNATS, NATSListen: addr[n].NATS,
				HTTPListen: addr[n].HTTP, Nodes: members}, dir, sec)
			if err != nil {
				return nil, err
			}
			file[n], err = yaml.Marshal(cfg)
			if err != nil {
				return nil, fmt.Errorf("write config of %s: %w", n, err)
			}
		}
	}
	// Every config is valid: only now write them and start processes.
	release()
	for _, n := range all {
		p.configs[n] = filepath.Join(dir, n+".yaml")
		if err := os.WriteFile(p.configs[n], file[n], 0o644); err != nil {
			return nil, fmt.Errorf("write config of %s: %w", n, err)
		}
	}
	for _, n := range all {
		if err := p.start(ctx, n); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

func (p *processes) urls() map[string]string { return maps.Clone(p.base) }

// start launches a node's process and waits until it serves.
func (p *processes) start(ctx context.Context, node string) error {
	out, err := os.OpenFile(p.logs[node], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log of %s: %w", node, err)
	}
	cmd := exec.Command(p.bin, "serve", "--config", p.configs[node])
	cmd.Env = childEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", node, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{}), out: out}
	go func() {
		cmd.Wait() //nolint:errcheck // the exit is observed through done
		out.Close()
		close(c.done)
	}()
	p.mu.Lock()
	p.procs[node] = c
	p.mu.Unlock()
	p.log.Info("node process started", "node", node, "region", p.region[node], "pid", cmd.Process.Pid)

	api, err := newAPIClient(map[string]string{node: p.base[node]}, nil, time.Second, 1, p.sec)
	if err != nil {
		return err
	}
	defer api.close()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("%s exited at start: %s (log %s)", p.what(node), cmd.ProcessState, lastLines(p.logs[node], 5))
		default:
		}
		if api.healthy(ctx, node) {
			return nil
		}
		if err := wait.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s did not serve within %s (log %s)", p.what(node), startTimeout, p.logs[node])
}

// what names a node in messages: "region X", or "node X-1 of region X".
func (p *processes) what(node string) string {
	if p.clustered[node] {
		return "node " + node + " of region " + p.region[node]
	}
	return "region " + node
}

// childEnv is environ without the GEOGATE_* variables, which would override
// the config file in the region's process.
func childEnv(environ []string) []string {
	return slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
		return strings.HasPrefix(kv, config.EnvPrefix)
	})
}

func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return path
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], " | ")
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *processes) kill(_ context.Context, node string) error {
	return p.stop(node, syscall.SIGKILL, 0)
}

// freeze stops a node's process with SIGSTOP: it holds its sockets open
// and answers nothing until thaw.
func (p *processes) freeze(node string) error {
	return p.signalFrozen(node, syscall.SIGSTOP, true)
}

// thaw resumes a frozen node's process with SIGCONT.
func (p *processes) thaw(node string) error {
	return p.signalFrozen(node, syscall.SIGCONT, false)
}

func (p *processes) signalFrozen(node string, sig syscall.Signal, frozen bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.procs[node]
	if c == nil {
		return fmt.Errorf("%s is not running", p.what(node))
	}
	if err := c.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", node, err)
	}
	p.frozen[node] = frozen
	return nil
}

// stop signals a node's process and waits up to grace (0: forever) before
// killing it. A frozen process is resumed after the signal, so that it can
// act on it.
func (p *processes) stop(node string, sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	c := p.procs[node]
	delete(p.procs, node)
	frozen := p.frozen[node]
	delete(p.frozen, node)
	p.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%s is not running", p.what(node))
	}
	if err := c.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", node, err)
	}
	if frozen {
		c.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // it may be gone already
	}
	if grace > 0 {
		select {
		case <-c.done:
			return nil
		case <-time.After(grace):
			p.log.Warn("node did not stop in time; killing it", "node", node, "grace", grace)
			c.cmd.Process.Kill() //nolint:errcheck // it may have exited just now
		}
	}
	<-c.done
	return nil
}

func (p *processes) wipe(node string) error {
	if err := os.RemoveAll(p.data[node]); err != nil {
		return fmt.Errorf("wipe %s: %w", node, err)
	}
	return nil
}

func (p *processes) tamper(region string, keys int, seed uint64) (store.TamperReport, error) {
	p.mu.Lock()
	_, running := p.procs[region]
	p.mu.Unlock()
	if running {
		return store.TamperReport{}, fmt.Errorf("tamper %s: kill the region first", region)
	}
	return store.Tamper(filepath.Join(p.data[region], "store"), keys, seed)
}

// restore runs `geogate restore FILE --config CFG` for the region.
func (p *processes) restore(ctx context.Context, region, file string) error {
	cmd := exec.CommandContext(ctx, p.bin, "restore", file, "--config", p.configs[region])
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("geogate restore for %s: %w: %s", region, err, strings.TrimSpace(string(out)))
	}
	p.log.Info("restored", "region", region, "output", strings.TrimSpace(string(out)))
	return nil
}

func (p *processes) restart(ctx context.Context, node string) error {
	return p.start(ctx, node)
}

func (p *processes) setSkew(string, time.Duration) error {
	return errors.New("clock skew needs the injected clock: run the scenario in-process")
}

// finalStates stops every node gracefully, then opens each store
// directly: the only way to read records with their Seen vectors and the
// whole conflict log from outside the process. Each state is a node's
// (RegionState.Region is the node's name).
func (p *processes) finalStates(context.Context) ([]RegionState, error) {
	if err := p.close(); err != nil {
		return nil, err
	}
	var out []RegionState
	for _, n := range p.nodes {
		s, err := store.Open(store.Options{
			Dir: filepath.Join(p.data[n], "store"), Region: p.region[n], Logger: p.log.With("node", n),
			Clock: conflict.NewClock(conflict.WallClock, 0), SmallFootprint: true, Clustered: p.clustered[n],
		})
		if err != nil {
			return nil, fmt.Errorf("open store of %s: %w", n, err)
		}
		st, err := readState(n, s)
		cerr := s.Close()
		if err != nil {
			return nil, err
		}
		if cerr != nil {
			return nil, fmt.Errorf("close store of %s: %w", n, cerr)
		}
		out = append(out, st)
	}
	return out, nil
}

// close stops every running node with SIGTERM (SIGKILL after 15s).
func (p *processes) close() error {
	p.mu.Lock()
	running := make([]string, 0, len(p.procs))
	for r := range p.procs {
		running = append(running, r)
	}
	p.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, r := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.stop(r, syscall.SIGTERM, 15*time.Second); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
