package region

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Roster records, per node of a region, whether the node held data of its
// own when it started: one key per node in a key-value bucket replicated
// on the region's nodes, without expiry. It decides only the region's
// first election (while the region log has never held an entry): a node
// that starts empty must not start the log when another node holds the
// region's data (a region of one node converted to several), or that
// data would be cut off from the region.
type Roster struct {
	kv jetstream.KeyValue
}

// RosterBucket is the name of region's roster bucket.
func RosterBucket(region string) string { return "GEOGATE_NODES_" + region }

// OpenRoster creates (or binds to) region's roster bucket with replicas
// copies.
func OpenRoster(ctx context.Context, js jetstream.JetStream, region string, replicas int) (*Roster, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      RosterBucket(region),
		Description: "geogate nodes of region " + region + " and whether each started with data",
		History:     1,
		Replicas:    max(replicas, 1),
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("roster bucket of %s: %w", region, err)
	}
	return &Roster{kv: kv}, nil
}

// Announce records whether node holds data. A node that once announced
// data keeps that record (an empty store later, e.g. moved aside, does
// not clear it): the record is about the region's first election only.
func (r *Roster) Announce(ctx context.Context, node string, hasData bool) error {
	if !hasData {
		if e, err := r.kv.Get(ctx, node); err == nil && string(e.Value()) == "data" {
			return nil
		}
	}
	v := "empty"
	if hasData {
		v = "data"
	}
	if _, err := r.kv.PutString(ctx, node, v); err != nil {
		return fmt.Errorf("announce %s: %w", node, err)
	}
	return nil
}

// Read returns every node that announced itself and whether it held data.
func (r *Roster) Read(ctx context.Context) (map[string]bool, error) {
	keys, err := r.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("read roster: %w", err)
	}
	out := map[string]bool{}
	for k := range keys.Keys() {
		e, err := r.kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
			continue
		case err != nil:
			return nil, fmt.Errorf("read roster %s: %w", k, err)
		}
		out[k] = string(e.Value()) == "data"
	}
	return out, nil
}

// FirstLeaderAllowed decides whether a node that starts empty may stand in
// the region's first election (the log never held an entry): not while
// any node announced data; yes once every one of nodes announced itself
// empty; otherwise (some nodes not heard from) only when patient is set,
// i.e. the caller waited long enough for them.
func FirstLeaderAllowed(announced map[string]bool, nodes []string, patient bool) bool {
	for _, data := range announced {
		if data {
			return false
		}
	}
	for _, n := range nodes {
		if _, ok := announced[n]; !ok {
			return patient
		}
	}
	return true
}
