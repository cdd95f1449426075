package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
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

// processes runs every region as a `geogate serve --config FILE` child
// process with a generated config. Each region's config points its peers'
// NATS URLs at the WAN proxies of its inbound links, so replication crosses
// the emulated WAN exactly as in process. A kill is SIGKILL; a restart runs
// the same command again on the same data directory.
type processes struct {
	bin     string
	log     *slog.Logger
	sec     *deploy.Material // nil: regions not secured
	regions []string
	configs map[string]string // region -> config file
	logs    map[string]string // region -> stdout/stderr file
	data    map[string]string // region -> data_dir
	base    map[string]string // region -> HTTP base URL

	mu    sync.Mutex
	procs map[string]*child
}

type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *os.File
}

var _ deployment = (*processes)(nil)

// startTimeout bounds a region process's start until /healthz answers.
const startTimeout = 30 * time.Second

// startProcesses builds and validates every region's config (regionConfig)
// before it writes any file or starts any process, so a scenario no region
// can run with fails with the region and key at fault. It then writes each
// region's config into dir, its data under dir/<region> and its output into
// logDir/<region>.log, and starts them all.
func startProcesses(ctx context.Context, sc *Scenario, plan *topology.Plan, dir, logDir, bin string, net *network, log *slog.Logger, sec *deploy.Material) (*processes, error) {
	if bin == "" {
		return nil, errNoBinary
	}
	ports, err := freePorts(2 * len(sc.Regions))
	if err != nil {
		return nil, err
	}
	httpAddr, natsAddr := map[string]string{}, map[string]string{}
	for i, r := range sc.Regions {
		httpAddr[r] = fmt.Sprintf("127.0.0.1:%d", ports[2*i])
		natsAddr[r] = fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])
	}
	p := &processes{
		bin: bin, log: log, sec: sec, regions: sc.Regions, procs: map[string]*child{},
		configs: map[string]string{}, logs: map[string]string{}, data: map[string]string{}, base: map[string]string{},
	}
	file := map[string][]byte{} // region -> config file contents
	httpScheme, _ := schemes(sec)
	for _, r := range sc.Regions {
		p.base[r] = httpScheme + "://" + httpAddr[r]
		p.data[r] = filepath.Join(dir, r)
		p.logs[r] = filepath.Join(logDir, r+".log")
		// What region r dials for each peer: the link's proxy when the
		// plan has a link peer -> r, else the peer's NATS directly.
		peerNATS := map[string]string{}
		for _, peer := range sc.Regions {
			peerNATS[peer] = natsAddr[peer]
			if peer != r && plan.HasLink(peer, r) {
				px, err := net.proxy(peer, r, natsAddr[peer])
				if err != nil {
					return nil, err
				}
				peerNATS[peer] = px.Addr()
			}
		}
		cfg, err := regionConfig(sc, r, regionAddrs{HTTP: httpAddr, PeerNATS: peerNATS, NATSListen: natsAddr[r]}, dir, sec)
		if err != nil {
			return nil, err
		}
		file[r], err = yaml.Marshal(cfg)
		if err != nil {
			return nil, fmt.Errorf("write config of %s: %w", r, err)
		}
	}
	// Every config is valid: only now write them and start processes.
	for _, r := range sc.Regions {
		p.configs[r] = filepath.Join(dir, r+".yaml")
		if err := os.WriteFile(p.configs[r], file[r], 0o644); err != nil {
			return nil, fmt.Errorf("write config of %s: %w", r, err)
		}
	}
	for _, r := range sc.Regions {
		if err := p.start(ctx, r); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (p *processes) urls() map[string]string { return maps.Clone(p.base) }

// start launches a region's process and waits until it serves.
func (p *processes) start(ctx context.Context, region string) error {
	out, err := os.OpenFile(p.logs[region], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log of %s: %w", region, err)
	}
	cmd := exec.Command(p.bin, "serve", "--config", p.configs[region])
	cmd.Env = childEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", region, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{}), out: out}
	go func() {
		cmd.Wait() //nolint:errcheck // the exit is observed through done
		out.Close()
		close(c.done)
	}()
	p.mu.Lock()
	p.procs[region] = c
	p.mu.Unlock()
	p.log.Info("region process started", "region", region, "pid", cmd.Process.Pid)

	api, err := newAPIClient(map[string]string{region: p.base[region]}, time.Second, 1, p.sec)
	if err != nil {
		return err
	}
	defer api.close()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("region %s exited at start: %s (log %s)", region, cmd.ProcessState, lastLines(p.logs[region], 5))
		default:
		}
		if api.healthy(ctx, region) {
			return nil
		}
		if err := wait.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("region %s did not serve within %s (log %s)", region, startTimeout, p.logs[region])
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
func (p *processes) kill(_ context.Context, region string) error {
	return p.stop(region, syscall.SIGKILL, 0)
}

// stop signals a region's process and waits up to grace (0: forever)
// before killing it.
func (p *processes) stop(region string, sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	c := p.procs[region]
	delete(p.procs, region)
	p.mu.Unlock()
	if c == nil {
		return fmt.Errorf("region %s is not running", region)
	}
	if err := c.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", region, err)
	}
	if grace > 0 {
		select {
		case <-c.done:
			return nil
		case <-time.After(grace):
			p.log.Warn("region did not stop in time; killing it", "region", region, "grace", grace)
			c.cmd.Process.Kill() //nolint:errcheck // it may have exited just now
		}
	}
	<-c.done
	return nil
}

func (p *processes) wipe(region string) error {
	if err := os.RemoveAll(p.data[region]); err != nil {
		return fmt.Errorf("wipe %s: %w", region, err)
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

func (p *processes) restart(ctx context.Context, region string) error {
	return p.start(ctx, region)
}

func (p *processes) setSkew(string, time.Duration) error {
	return errors.New("clock skew needs the injected clock: run the scenario in-process")
}

// finalStates stops every region gracefully, then opens each store
// directly: the only way to read records with their Seen vectors and the
// whole conflict log from outside the process.
func (p *processes) finalStates(context.Context) ([]RegionState, error) {
	if err := p.close(); err != nil {
		return nil, err
	}
	var out []RegionState
	for _, r := range p.regions {
		s, err := store.Open(store.Options{
			Dir: filepath.Join(p.data[r], "store"), Region: r, Logger: p.log.With("region", r),
			Clock: conflict.NewClock(conflict.WallClock, 0), SmallFootprint: true,
		})
		if err != nil {
			return nil, fmt.Errorf("open store of %s: %w", r, err)
		}
		st, err := readState(r, s)
		cerr := s.Close()
		if err != nil {
			return nil, err
		}
		if cerr != nil {
			return nil, fmt.Errorf("close store of %s: %w", r, cerr)
		}
		out = append(out, st)
	}
	return out, nil
}

// close stops every running region with SIGTERM (SIGKILL after 15s).
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
