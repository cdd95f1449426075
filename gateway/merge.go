package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/store"
)

// mergeQueue holds the keys whose siblings this region, as their resolver,
// must merge. A key queued twice is merged once.
type mergeQueue struct {
	mu     sync.Mutex
	keys   map[string]struct{}
	signal chan struct{}
}

func newMergeQueue() *mergeQueue {
	return &mergeQueue{keys: map[string]struct{}{}, signal: make(chan struct{}, 1)}
}

func (q *mergeQueue) add(key string) {
	q.mu.Lock()
	q.keys[key] = struct{}{}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *mergeQueue) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]string, 0, len(q.keys))
	for k := range q.keys {
		out = append(out, k)
	}
	clear(q.keys)
	return out
}

// afterApply runs after a batch of replicated events is durable.
func (n *Node) afterApply(batch []store.Incoming, res []store.ApplyResult) {
	if !n.rules().HasMerge() {
		return // no rule merges: no rule to match per event
	}
	for i, r := range res {
		if r.Changed && r.Outcome.Added {
			key := batch[i].Event.Key
			if rule, err := n.matchRule(key); err == nil {
				n.maybeMerge(rule, key, conflict.Record{})
			}
		}
	}
}

// maybeMerge queues key for a merge when its rule merges on write and this
// region is the key's resolver. rec, when known, saves a read for keys
// that have no siblings.
func (n *Node) maybeMerge(rule *rules.Rule, key string, rec conflict.Record) {
	if !rule.HasMerge() {
		return
	}
	if len(rec.Versions) > 0 && len(rec.Live()) < 2 {
		return
	}
	resolver, err := rule.Resolver(key, nil)
	if err != nil {
		n.ruleError(key, err) // no region merges: the siblings stay
		return
	}
	if resolver != n.cfg.Region {
		return
	}
	n.merges.add(key)
}

// runMerges is the resolver: it writes each queued key's merged value as a
// new version whose context is the frontier it merged, so every region
// replaces exactly those siblings with the merge. Only the resolver merges,
// so merges never ping-pong; versions that arrive during a merge stay as
// siblings and queue another merge.
func (n *Node) runMerges(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.merges.signal:
		}
		for _, key := range n.merges.take() {
			n.mergeKey(ctx, key)
		}
	}
}

func (n *Node) mergeKey(ctx context.Context, key string) {
	rule, err := n.matchRule(key)
	if err != nil || !rule.HasMerge() {
		return
	}
	rec, ok, err := n.store.Get(key)
	if err != nil || !ok {
		return
	}
	merged, ok, err := rule.MergeOnWrite(key, n.cfg.Region, rec.Versions)
	if err != nil {
		n.ruleError(key, err)
		return
	}
	if !ok {
		return
	}
	doc, err := store.ParseDoc(merged)
	if err != nil {
		n.ruleError(key, &rules.EvalError{Rule: rule.Name(), Field: "merge", Key: key, Err: fmt.Errorf("merged value: %w", err)})
		return
	}
	if _, err := n.writeMutation(ctx, rule, store.Mutation{Key: key, Value: doc, Context: rec.Context(), Merged: true}); err != nil && ctx.Err() == nil {
		n.log.Error("resolver merge write failed; siblings kept", "key", key, "err", err)
	}
}

// publishConflicts publishes durable conflict-log entries on NATS, one
// message each (best effort: the log in the store is the record).
func (n *Node) publishConflicts(entries []store.ConflictEntry) {
	if n.conn == nil {
		return
	}
	for _, e := range entries {
		b, err := json.Marshal(e)
		if err != nil {
			continue
		}
		n.conn.Publish(conflictsSubject(n.cfg.Region), b) //nolint:errcheck // best effort; the store has it
	}
}
