package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"time"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/wait"
)

// readKeys is how many keys the read measurement reads (at random).
const readKeys = 2000

// nodes measures a region of three nodes against a region of one, in one
// run, both with durability.sync on and the default region-log settings:
//
//   - writes: o.Clients keep-alive clients PUT fresh keys at the region's
//     leader. In a region of three nodes a write is acknowledged once the
//     region log holds it on two of the three (a replicated JetStream
//     append) besides the leader's own synced commit. Rounds alternate
//     between the two regions; the medians are reported, with each
//     region's p99 write latency over all its rounds;
//   - reads: o.Clients clients GET keys (readKeys of them, written and
//     replicated beforehand) either all at the leader or spread over the
//     leader and both followers (client i at node i mod 3).
//
// Every node runs in this process: on one machine the nodes share its
// cores, so spreading reads measures what followers add when the leader,
// not the machine, is the limit; across machines each node brings its own.
func nodes(ctx context.Context, o *Options, rep *Report) error {
	spec := func(name string, nodes int) gateway.ClusterSpec {
		return gateway.ClusterSpec{
			Regions: []string{"r1"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: filepath.Join(o.Dir, name), Sync: true,
			Nodes:   nodes,
			Options: func(string) gateway.Options { return gateway.Options{Logger: o.Logger} },
		}
	}
	one, err := gateway.StartCluster(ctx, spec("one-node", 1))
	if err != nil {
		return err
	}
	defer one.Close()
	three, err := gateway.StartCluster(ctx, spec("three-nodes", 3))
	if err != nil {
		return err
	}
	defer three.Close()
	leader, err := regionLeader(ctx, three, "r1")
	if err != nil {
		return err
	}
	n := 3 * o.Writes
	var latOne, latThree []time.Duration
	oneRate, threeRate, writeRatio, err := alternate(benchRounds,
		func(round int) (float64, error) {
			r, lat, err := timedPuts(ctx, []string{one.Node("r1").HTTPURL()}, fmt.Sprintf("one%d", round), n, o.Clients)
			latOne = append(latOne, lat...)
			return r, err
		},
		func(round int) (float64, error) {
			r, lat, err := timedPuts(ctx, []string{leader.HTTPURL()}, fmt.Sprintf("three%d", round), n, o.Clients)
			latThree = append(latThree, lat...)
			return r, err
		})
	if err != nil {
		return err
	}

	// Reads: the keys are written at the leader and every follower has
	// applied them before the clock starts.
	if _, _, err := timedPuts(ctx, []string{leader.HTTPURL()}, "read", readKeys, o.Clients); err != nil {
		return err
	}
	var all []string
	for _, nd := range three.RegionNodes("r1") {
		all = append(all, nd.HTTPURL())
	}
	want, _ := leader.Store().LogPosition()
	if err := wait.Until(ctx, time.Minute, "the followers to apply the keys read", func() bool {
		for _, nd := range three.RegionNodes("r1") {
			if pos, _ := nd.Store().LogPosition(); pos < want {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	reads := 10 * o.Writes
	leaderRate, spreadRate, readRatio, err := alternate(benchRounds,
		func(int) (float64, error) {
			return gets(ctx, []string{leader.HTTPURL()}, "read", readKeys, reads, o.Clients)
		},
		func(int) (float64, error) { return gets(ctx, all, "read", readKeys, reads, o.Clients) })
	if err != nil {
		return err
	}
	rep.add(o, fmt.Sprintf("HTTP PUT x%d, region of 1 node", o.Clients), oneRate, "writes/s")
	rep.add(o, fmt.Sprintf("HTTP PUT x%d, region of 3 nodes", o.Clients), threeRate, "writes/s")
	rep.add(o, "write p99, region of 1 node", p99(latOne).Seconds()*1000, "ms")
	rep.add(o, "write p99, region of 3 nodes", p99(latThree).Seconds()*1000, "ms")
	rep.add(o, fmt.Sprintf("HTTP GET x%d at the leader", o.Clients), leaderRate, "reads/s")
	rep.add(o, fmt.Sprintf("HTTP GET x%d over leader and 2 followers", o.Clients), spreadRate, "reads/s")
	rep.ratio(o, "writes, 3 nodes / 1 node", writeRatio, ">= 0.6", writeRatio >= 0.6)
	rep.ratio(o, "reads over 3 nodes / leader alone", readRatio, ">= 2", readRatio >= 2)
	return nil
}

// regionLeader waits for region's leader.
func regionLeader(ctx context.Context, c *gateway.Cluster, region string) (*gateway.Node, error) {
	var leader *gateway.Node
	err := wait.Until(ctx, time.Minute, "a leader of "+region, func() bool {
		for _, nd := range c.RegionNodes(region) {
			if nd != nil && nd.Status().Role == "leader" {
				leader = nd
				return true
			}
		}
		return false
	})
	return leader, err
}

// timedPuts is httpPuts with the connections spread over bases and every
// write's latency returned.
func timedPuts(ctx context.Context, bases []string, prefix string, n, clients int) (float64, []time.Duration, error) {
	body := []byte(`{"name":"benchmark","n":123456,"tags":["a","b"]}`)
	lat := make([]time.Duration, n)
	rate, err := spread(ctx, bases, n, clients, nil, "", func(c *putConn, host string, i int) error {
		start := time.Now()
		err := c.put(fmt.Sprintf("bench-%s-%d", prefix, i), host, body, i%checkEvery == 0)
		lat[i-1] = time.Since(start)
		return err
	})
	return rate, lat, err
}

// gets runs n GETs of keys bench-<prefix>-<1..keys> chosen by a stride
// from `clients` connections spread over bases, and returns their rate.
func gets(ctx context.Context, bases []string, prefix string, keys, n, clients int) (float64, error) {
	return spread(ctx, bases, n, clients, nil, "", func(c *putConn, host string, i int) error {
		return c.get(fmt.Sprintf("bench-%s-%d", prefix, 1+(i*7919)%keys), host)
	})
}

// spread runs fn(1..n) over `clients` keep-alive connections, connection k
// to bases[k mod len(bases)] (over TLS trusting tc when set, with a bearer
// token when set), each request on a free connection, and returns the
// rate. The connections are set up before the clock starts, as keep-alive
// connections would be.
func spread(ctx context.Context, bases []string, n, clients int, tc *tls.Config, token string, fn func(c *putConn, host string, i int) error) (float64, error) {
	type conn struct {
		c    *putConn
		host string
	}
	conns := make([]conn, clients)
	for k := range clients {
		u, err := url.Parse(bases[k%len(bases)])
		if err != nil {
			return 0, err
		}
		ktc := tc
		if ktc != nil {
			ktc = tc.Clone() // shares the session cache
			ktc.ServerName = u.Hostname()
		}
		c, err := dialPut(ctx, u.Host, ktc)
		if err != nil {
			return 0, err
		}
		defer c.conn.Close()
		if token != "" {
			c.auth = "Authorization: Bearer " + token + "\r\n"
		}
		conns[k] = conn{c, u.Host}
	}
	free := make(chan int, clients)
	for k := range clients {
		free <- k
	}
	return parallel(n, clients, func(i int) error {
		k := <-free
		defer func() { free <- k }()
		return fn(conns[k].c, conns[k].host, i)
	})
}

// p99 returns the 99th percentile of ds (0 for none).
func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}
