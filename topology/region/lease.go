package region

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrHeld is returned by Lease.Acquire when another node holds the lease.
var ErrHeld = errors.New("the region's leader lease is held by another node")

// ErrLost is returned by Lease.Renew when the lease was taken by another
// node (or expired and was taken) since this node last held it.
var ErrLost = errors.New("the region's leader lease was lost")

// Holder is the value of the lease: the node that leads and its term.
type Holder struct {
	Node string `json:"node"`
	Term uint64 `json:"term"`
}

// Lease is the region's leader lease: one key of a JetStream key-value
// bucket replicated on the region's nodes, whose every value expires TTL
// after it was written. A node takes the lease by creating the key (only
// possible while nobody holds it) and keeps it by rewriting it with
// compare-and-set on the revision it last wrote, well within TTL; a node
// that stops renewing loses it after TTL. The lease says who should lead;
// what keeps two leaders from both writing is the region log's fencing
// (Log.Append), not the lease.
type Lease struct {
	kv   jetstream.KeyValue
	key  string
	node string
	ttl  time.Duration
	rev  uint64 // revision of this node's value, 0 when it does not hold it
	held Holder
}

// LeaseBucket is the name of region's lease bucket.
func LeaseBucket(region string) string { return "GEOGATE_LEADER_" + region }

// OpenLease creates (or binds to) region's lease bucket with replicas
// copies and values that expire after ttl, for node.
func OpenLease(ctx context.Context, js jetstream.JetStream, region, node string, replicas int, ttl time.Duration) (*Lease, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LeaseBucket(region),
		Description: "geogate leader lease of region " + region,
		History:     1,
		TTL:         ttl,
		Replicas:    max(replicas, 1),
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket of %s: %w", region, err)
	}
	return &Lease{kv: kv, key: "leader", node: node, ttl: ttl}, nil
}

// Read returns the current holder; ok is false when nobody holds the lease
// (never taken, or expired).
func (l *Lease) Read(ctx context.Context) (Holder, bool, error) {
	e, err := l.kv.Get(ctx, l.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return Holder{}, false, nil
	case err != nil:
		return Holder{}, false, fmt.Errorf("read lease: %w", err)
	}
	var h Holder
	if err := json.Unmarshal(e.Value(), &h); err != nil || h.Node == "" {
		return Holder{}, false, fmt.Errorf("read lease: malformed value %q", e.Value())
	}
	return h, true, nil
}

// Acquire takes the lease for this node and term. It fails with ErrHeld
// when another node holds it.
func (l *Lease) Acquire(ctx context.Context, term uint64) error {
	h := Holder{Node: l.node, Term: term}
	b, _ := json.Marshal(h) //nolint:errchkjson // plain struct
	rev, err := l.kv.Create(ctx, l.key, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return ErrHeld
	}
	if err != nil {
		return fmt.Errorf("acquire lease: %w", err)
	}
	l.rev, l.held = rev, h
	return nil
}

// Renew rewrites the lease, extending it by TTL (or takes it again when it
// expired and nobody took it). It fails with ErrLost when another node
// holds it.
func (l *Lease) Renew(ctx context.Context) error {
	return l.renew(ctx, true)
}

func (l *Lease) renew(ctx context.Context, recheck bool) error {
	if l.rev == 0 {
		return ErrLost
	}
	b, _ := json.Marshal(l.held) //nolint:errchkjson // plain struct
	rev, err := l.kv.Update(ctx, l.key, b, l.rev)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		// It expired (renewals could not reach the bucket for a while)
		// and nobody took it since: take it again, if still free.
		rev, err = l.kv.Create(ctx, l.key, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			l.rev = 0
			return ErrLost
		}
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		// A renewal whose answer was lost (a timeout, a stream leader
		// moving) may have been stored: if the value is still this
		// node's own (node and term), it holds the lease at that
		// revision.
		if e, gerr := l.kv.Get(ctx, l.key); gerr == nil && recheck {
			var h Holder
			if json.Unmarshal(e.Value(), &h) == nil && h == l.held {
				l.rev = e.Revision()
				return l.renew(ctx, false)
			}
		}
		l.rev = 0
		return ErrLost
	}
	if err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	l.rev = rev
	return nil
}

// Release gives the lease up if this node still holds it (best effort: a
// lease not released expires after TTL).
func (l *Lease) Release(ctx context.Context) {
	if l.rev == 0 {
		return
	}
	l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev)) //nolint:errcheck // expires anyway
	l.rev = 0
}

// TTL is how long a value lives without renewal.
func (l *Lease) TTL() time.Duration { return l.ttl }
