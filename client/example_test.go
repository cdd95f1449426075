package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/rules"
)

// exampleRegions starts real regions in this process (as `geogate demo`
// does) and returns their URLs and a function that stops them.
func exampleRegions(regions []string, rs []rules.Spec) ([]string, func()) {
	dir, err := os.MkdirTemp("", "geogate-example-")
	if err != nil {
		log.Fatal(err)
	}
	c, err := gateway.StartCluster(context.Background(), gateway.ClusterSpec{
		Regions: regions, Topology: config.Topology{Kind: "all-to-all"}, DataDir: dir, Rules: rs,
		Options: func(string) gateway.Options { return gateway.Options{Logger: slog.New(slog.DiscardHandler)} },
	})
	if err != nil {
		log.Fatal(err)
	}
	var urls []string
	for _, r := range regions {
		urls = append(urls, c.Node(r).HTTPURL())
	}
	return urls, func() { c.Close(); os.RemoveAll(dir) }
}

// A client with two regions: it writes at the first, and its session makes
// a read at the second show the write (the region waits until it has
// replicated it).
func Example() {
	urls, stop := exampleRegions([]string{"us-east", "eu-west"}, nil)
	defer stop()
	ctx := context.Background()

	c, err := client.New(urls)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "user/1", map[string]string{"name": "Ada"}); err != nil {
		log.Fatal(err)
	}

	// Another client, at eu-west only, given the first one's session (as a
	// web tier would pass it in a cookie).
	eu, err := client.New(urls[1:])
	if err != nil {
		log.Fatal(err)
	}
	defer eu.Close()
	if err := eu.SetSession(c.Session()); err != nil {
		log.Fatal(err)
	}
	v, err := eu.Get(ctx, "user/1")
	if err != nil {
		log.Fatal(err)
	}
	var user struct{ Name string }
	if err := v.Decode(&user); err != nil {
		log.Fatal(err)
	}
	fmt.Println(user.Name, "governed by rule", v.Rule)

	_, err = c.Get(ctx, "user/2")
	fmt.Println("user/2 not found:", client.IsNotFound(err))
	// Output:
	// Ada governed by rule default
	// user/2 not found: true
}

// Siblings settled by a resolver, as Riak's clients do: two writes that did
// not see each other leave two carts; the resolver's union is written back
// with the context that covers both, and the siblings go away.
func ExampleWithResolver() {
	urls, stop := exampleRegions([]string{"us-east"}, []rules.Spec{{Name: "carts", Match: "true", Strategy: "siblings"}})
	defer stop()
	ctx := context.Background()

	// Two writers that do not share contexts.
	for _, item := range []string{"milk", "eggs"} {
		w, err := client.New(urls, client.WithoutTracking())
		if err != nil {
			log.Fatal(err)
		}
		if _, err := w.Put(ctx, "cart/42", []string{item}); err != nil {
			log.Fatal(err)
		}
	}

	union := func(ctx context.Context, key string, siblings []json.RawMessage) (any, error) {
		var all []string
		for _, s := range siblings {
			var items []string
			if err := json.Unmarshal(s, &items); err != nil {
				return nil, err
			}
			all = append(all, items...)
		}
		slices.Sort(all)
		return slices.Compact(all), nil
	}
	c, err := client.New(urls, client.WithResolver(union))
	if err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, "cart/42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(v.Data), "written back:", v.WriteBack != nil)

	v, err = c.Get(ctx, "cart/42", client.Resolve(nil))
	fmt.Println(string(v.Data), "siblings:", len(v.Siblings), err)
	// Output:
	// ["eggs","milk"] written back: true
	// ["eggs","milk"] siblings: 0 <nil>
}

// A deployment with TLS and tokens: the client trusts the deployment's CA,
// sends its bearer token, and has three regions to go to, the nearest
// first. (Compile-only: it needs such a deployment.)
func ExampleNew() {
	c, err := client.New(
		[]string{"https://us-east.example.com:7101", "https://eu-west.example.com:7101", "https://ap-south.example.com:7101"},
		client.WithTLSFiles("deploy/tls/ca.pem", "", ""),
		client.WithToken("token from deploy/tokens/writer.token"),
		client.WithRetry(client.Retry{MaxAttempts: 6, BaseDelay: 100 * time.Millisecond, MaxDelay: 3 * time.Second}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "orders/1", map[string]any{"total": 42}); err != nil {
		var unauth *client.UnauthenticatedError
		switch {
		case errors.As(err, &unauth):
			log.Fatal("check the token: ", err)
		case errors.Is(err, client.ErrOutcomeUnknown):
			log.Print("the write may have been applied; read orders/1 before writing again")
		default:
			log.Fatal(err)
		}
	}
}

// Every live key under a prefix, a page at a time.
func ExampleClient_Keys() {
	urls, stop := exampleRegions([]string{"us-east"}, nil)
	defer stop()
	ctx := context.Background()
	c, err := client.New(urls)
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range []string{"user/2", "user/1", "order/1"} {
		if _, err := c.Put(ctx, k, true); err != nil {
			log.Fatal(err)
		}
	}
	for key, err := range c.Keys(ctx, "user/") {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(key)
	}
	// Output:
	// user/1
	// user/2
}
