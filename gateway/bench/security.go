package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
)

// lagRounds is how many times the lag runs alternate.
const lagRounds = 3

// pair is the same 2-region deployment (r1, r2, all-to-all) started twice:
// insecure, and secured as geogate init secures one (HTTPS with bearer
// tokens, NATS with TLS, client certificates and per-region NKey users).
type pair struct {
	plain, secured *gateway.Cluster
	material       *deploy.Material
}

// startPair starts both deployments under dir. r1Sync is r1's
// durability.sync (r2 always syncs).
func startPair(ctx context.Context, o *Options, dir string, r1Sync bool) (*pair, error) {
	m, err := deploy.WriteMaterial(filepath.Join(dir, "secrets"), []string{"r1", "r2"}, deploy.MaterialOptions{})
	if err != nil {
		return nil, err
	}
	spec := func(name string, secure bool) gateway.ClusterSpec {
		return gateway.ClusterSpec{
			Regions: []string{"r1", "r2"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: filepath.Join(dir, name), Sync: true,
			Tune: func(c *config.Config) {
				if c.Region == "r1" {
					c.Durability.Sync = r1Sync
				}
				if secure {
					m.Secure(c, c.Region)
				}
			},
			Options: func(string) gateway.Options { return gateway.Options{Logger: o.Logger} },
		}
	}
	p := &pair{material: m}
	if p.plain, err = gateway.StartCluster(ctx, spec("plain", false)); err != nil {
		return nil, err
	}
	if p.secured, err = gateway.StartCluster(ctx, spec("secured", true)); err != nil {
		p.plain.Close()
		return nil, err
	}
	return p, nil
}

func (p *pair) close() {
	p.plain.Close()
	p.secured.Close()
}

// security measures what security costs, in one run: HTTP PUT throughput
// at r1 (sync on, o.Clients keep-alive connections; secured: HTTPS with a
// writer token, sessions resumed), replication throughput r1 -> r2 (r1
// unsynced, so that replication is the bottleneck; secured: the link over
// TLS with r2's credentials) and replication lag p99 at o.Rate writes/s,
// each secured against the same deployment without security. Throughputs
// alternate the two deployments for benchRounds rounds and report the
// median of the per-round ratios; the lag runs go side by side, lagRounds
// times, and report the median of the per-round p99 differences.
func security(ctx context.Context, o *Options, rep *Report) error {
	p, err := startPair(ctx, o, filepath.Join(o.Dir, "security-writes"), true)
	if err != nil {
		return err
	}
	defer p.close()
	n := 3 * o.Writes
	tc, token := p.material.ClientTLS(), p.material.Tokens[auth.Writer]
	plainPut, securedPut, putRatio, err := alternate(benchRounds,
		func(round int) (float64, error) {
			return httpPuts(ctx, p.plain.Node("r1").HTTPURL(), fmt.Sprintf("p%d", round), n, o.Clients)
		},
		func(round int) (float64, error) {
			return httpPutsAs(ctx, p.secured.Node("r1").HTTPURL(), fmt.Sprintf("s%d", round), n, o.Clients, tc, token)
		})
	if err != nil {
		return err
	}

	// Lag at a steady rate: the two deployments at the same time, each at
	// o.Rate writes/s, so that both see the same load on a shared machine
	// (run one after the other, their p99s differed by tens of ms either
	// way from one run to the next); lagRounds rounds, the medians, and the
	// median of the per-round differences.
	var plainP50s, plainP99s, securedP50s, securedP99s, extras []float64
	for range lagRounds {
		var p50, p99, s50, s99 float64
		var perr, serr error
		var wg sync.WaitGroup
		wg.Go(func() {
			p50, p99, perr = steadyLag(ctx, p.plain.Node("r1").Store(), p.plain.Node("r2").Store(), o.Rate, o.Lag)
		})
		wg.Go(func() {
			s50, s99, serr = steadyLag(ctx, p.secured.Node("r1").Store(), p.secured.Node("r2").Store(), o.Rate, o.Lag)
		})
		wg.Wait()
		if err := errors.Join(perr, serr); err != nil {
			return err
		}
		plainP50s, plainP99s = append(plainP50s, p50), append(plainP99s, p99)
		securedP50s, securedP99s = append(securedP50s, s50), append(securedP99s, s99)
		extras = append(extras, (s99-p99)*1000)
	}
	plainP50, plainP99, securedP50, securedP99 := median(plainP50s), median(plainP99s), median(securedP50s), median(securedP99s)
	p.close()

	// Replication throughput with r1 unsynced.
	q, err := startPair(ctx, o, filepath.Join(o.Dir, "security-replication"), false)
	if err != nil {
		return err
	}
	defer q.close()
	through := func(c *gateway.Cluster, prefix string) (float64, error) {
		r1, r2 := c.Node("r1").Store(), c.Node("r2").Store()
		start := time.Now()
		if _, err := storeWrites(ctx, r1, o.Events, 16, prefix); err != nil {
			return 0, err
		}
		if miss := waitApplied(ctx, r2, r1.Actor(), r1.Seq(), 5*time.Minute); miss != nil {
			return 0, fmt.Errorf("r2 did not apply r1's events: %v", miss)
		}
		return float64(o.Events) / time.Now().Sub(start).Seconds(), nil
	}
	plainRep, securedRep, repRatio, err := alternate(benchRounds,
		func(round int) (float64, error) { return through(q.plain, fmt.Sprintf("p%d", round)) },
		func(round int) (float64, error) { return through(q.secured, fmt.Sprintf("s%d", round)) })
	if err != nil {
		return err
	}

	rep.add(o, fmt.Sprintf("HTTP PUT, 2 regions, x%d, insecure", o.Clients), plainPut, "writes/s")
	rep.add(o, fmt.Sprintf("HTTP PUT, 2 regions, x%d, TLS + token", o.Clients), securedPut, "writes/s")
	rep.add(o, "replication r1 -> r2, 2 regions, insecure", plainRep, "events/s")
	rep.add(o, "replication r1 -> r2, 2 regions, TLS + credentials", securedRep, "events/s")
	rep.add(o, fmt.Sprintf("lag p50 at %d writes/s, insecure", o.Rate), plainP50*1000, "ms")
	rep.add(o, fmt.Sprintf("lag p99 at %d writes/s, insecure", o.Rate), plainP99*1000, "ms")
	rep.add(o, fmt.Sprintf("lag p50 at %d writes/s, secured", o.Rate), securedP50*1000, "ms")
	rep.add(o, fmt.Sprintf("lag p99 at %d writes/s, secured", o.Rate), securedP99*1000, "ms")
	rep.ratio(o, "HTTP PUT secured / insecure", putRatio, ">= 0.8", putRatio >= 0.8)
	rep.ratio(o, "replication secured / insecure", repRatio, ">= 0.8", repRatio >= 0.8)
	extra := median(extras)
	rep.ratio(o, "lag p99 secured - insecure (ms)", extra, "<= 2", extra <= 2)
	return nil
}
