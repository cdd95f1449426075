package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/geogate/geogate/gateway/config"
)

// childSpec tells a re-executed test binary to run one region of a cluster
// until it is killed.
type childSpec struct {
	Spec  ClusterSpec     `json:"spec"`
	Index int             `json:"index"`
	Peers map[string]Peer `json:"peers"`
}

const childEnv = "GEOGATE_TEST_CHILD_NODE"

func TestMain(m *testing.M) {
	if raw := os.Getenv(childEnv); raw != "" {
		runChild(raw)
		return
	}
	os.Exit(m.Run())
}

func runChild(raw string) {
	var cs childSpec
	if err := json.Unmarshal([]byte(raw), &cs); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		os.Exit(2)
	}
	cfg, err := cs.Spec.RegionConfig(cs.Index)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		os.Exit(2)
	}
	n, err := New(cfg, Options{Logger: testLogger(), SmallFootprint: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child node:", err)
		os.Exit(2)
	}
	if err := n.Start(context.Background(), cs.Peers); err != nil {
		fmt.Fprintln(os.Stderr, "child start:", err)
		os.Exit(2)
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}

func startChild(t *testing.T, cs childSpec) *exec.Cmd {
	t.Helper()
	raw, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("child region exited before it was ready")
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child region not ready within 30s")
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// TestKill9DuringWrites kills a region's process with SIGKILL in the middle
// of a stream of writes, restarts it, and checks every acknowledged write
// reaches every region and is applied exactly once.
func TestKill9DuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 test runs a child process")
	}
	regions := []string{"r1", "r2", "r3"}
	spec := ClusterSpec{Regions: regions, Topology: config.Topology{Kind: "all-to-all"}, DataDir: t.TempDir(), Sync: true}
	ps, err := freePorts(2) // distinct: held together
	if err != nil {
		t.Fatal(err)
	}
	childHTTP, childNATS := ps[0], ps[1]
	// r2 and r3 run in this process.
	peers := map[string]Peer{"r1": {HTTP: fmt.Sprintf("http://127.0.0.1:%d", childHTTP), NATS: fmt.Sprintf("nats://127.0.0.1:%d", childNATS)}}
	var nodes []*Node
	for i := 1; i < 3; i++ {
		cfg, err := spec.RegionConfig(i)
		if err != nil {
			t.Fatal(err)
		}
		n, err := New(cfg, Options{Logger: testLogger(), SmallFootprint: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
		peers[cfg.Region] = Peer{HTTP: n.HTTPURL(), NATS: n.NATSURL()}
	}
	for _, n := range nodes {
		if err := n.Start(context.Background(), peers); err != nil {
			t.Fatal(err)
		}
	}
	// The child listens on the ports the others expect.
	cs := childSpec{Spec: spec, Index: 0, Peers: peers}
	cs.Spec.HTTPBase, cs.Spec.NATSBase = childHTTP, childNATS
	cmd := startChild(t, cs)

	r1 := peers["r1"].HTTP
	var (
		mu    sync.Mutex
		acked = map[string]string{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key, val := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
				req, _ := http.NewRequest("PUT", r1+"/v1/kv/"+key, strings.NewReader(val))
				resp, err := client.Do(req)
				if err != nil {
					return // the region died under us: unacknowledged
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
				}
			}
		}()
	}
	eventually(t, 30*time.Second, "200 acknowledged writes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 200
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	close(stop)
	wg.Wait()
	t.Logf("killed r1 after %d acknowledged writes", len(acked))

	// Restart on the same data directory and ports.
	startChild(t, cs)
	// A few more writes after the restart.
	for i := range 20 {
		key, val := fmt.Sprintf("after-%d", i), fmt.Sprintf(`{"after":%d}`, i)
		if a := do(t, "PUT", r1+"/v1/kv/"+key, []byte(val)); a.status != 200 {
			t.Fatalf("write after restart: %d %s", a.status, a.body)
		}
		acked[key] = val
	}
	var r1Seq uint64
	for _, url := range []string{r1, peers["r2"].HTTP, peers["r3"].HTTP} {
		eventually(t, 60*time.Second, "every acknowledged write at "+url, func() bool {
			for key, val := range acked {
				a := do(t, "GET", url+"/v1/kv/"+key, nil)
				if a.status != 200 || strings.TrimSpace(string(a.body)) != val {
					return false
				}
			}
			return true
		})
	}
	st := do(t, "GET", r1+"/v1/status", nil).json(t)
	r1Seq = uint64(st["seq"].(float64))
	actor := st["actor"].(string)
	if r1Seq < uint64(len(acked)) {
		t.Fatalf("r1 seq %d < %d acknowledged writes", r1Seq, len(acked))
	}
	for _, n := range nodes {
		eventually(t, 30*time.Second, "watermark of r1 at "+n.Config().Region, func() bool {
			return n.Store().Applied()[actor] == r1Seq
		})
		// Exactly once: r1 wrote r1Seq events; each was applied once.
		if got := n.Store().Stats().Applied; got != r1Seq {
			t.Fatalf("%s applied %d events of r1, r1 wrote %d", n.Config().Region, got, r1Seq)
		}
	}
}
