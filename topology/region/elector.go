package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Role is a node's part in its region.
type Role string

// Roles.
const (
	// Follower: applies the region log, serves reads, forwards writes.
	Follower Role = "follower"
	// Leader: takes writes, appends them to the region log, runs the
	// region's cross-region publisher and links.
	Leader Role = "leader"
)

// Hooks are what an Elector asks of its node.
type Hooks struct {
	// Promote runs once this node holds the lease for term, before it
	// leads: it must apply the region log to its end and then append a
	// term marker after the last entry (Log.Append), which fences off any
	// earlier leader. An error gives the lease back and the node stays a
	// follower.
	Promote func(ctx context.Context, term uint64) error
	// Lead runs the leader's duties for term until ctx ends (the lease was
	// lost, or the node stops); it returns when they are stopped. If it
	// returns on its own (the node found itself fenced, or cannot take
	// writes), leadership ends and the lease is given back.
	Lead func(ctx context.Context, term uint64)
	// Observe is told who leads whenever it changes, this node included
	// (Holder{} when nobody does).
	Observe func(h Holder)
	// Ready, if set, says whether the node could lead now (it holds the
	// region's data and follows the log); a node that could not does not
	// try for the lease, so that one that can gets it.
	Ready func() bool
	// Abandon runs when Promote returned nil but the lease was lost while
	// it ran (the renewal beside it found another holder): Lead is not
	// called for that term, and Abandon must undo what Promote did, so
	// that the node follows the log again. Anything the promoted node
	// appended meanwhile passed the log's fence, so nothing needs undoing
	// in the log. Never called at the same time as Promote or Lead.
	Abandon func(term uint64)
}

// ElectorConfig configures an Elector.
type ElectorConfig struct {
	Node  string
	Lease *Lease
	Log   *Log
	Hooks Hooks
	// Check is how often a follower looks at the lease (default TTL/6);
	// the actual wait is drawn between Check/2 and Check, so that nodes do
	// not all try at the same moment.
	Check time.Duration
	// Renew is how often the leader renews the lease (default TTL/3).
	Renew  time.Duration
	Logger *slog.Logger
}

// Elector runs one node's part in choosing the region's leader: a follower
// takes the lease when nobody holds it, promotes itself (catch up, fence),
// and leads until it learns another node holds the lease, the log fences
// it off (Lead returns), or the node stops. Terms only grow: a new term is one past the highest term in the
// log and in the lease.
type Elector struct {
	cfg ElectorConfig
	log *slog.Logger

	mu     sync.Mutex
	role   Role
	leader Holder
}

// NewElector returns an Elector; Run starts it.
func NewElector(cfg ElectorConfig) *Elector {
	ttl := cfg.Lease.TTL()
	if cfg.Check <= 0 {
		cfg.Check = ttl / 6
	}
	if cfg.Renew <= 0 {
		cfg.Renew = ttl / 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, log: cfg.Logger.With("component", "elector"), role: Follower}
}

// Role returns the node's current role and the leader it knows of.
func (e *Elector) Role() (Role, Holder) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.role, e.leader
}

func (e *Elector) observe(role Role, h Holder) {
	e.mu.Lock()
	changed := e.leader != h || e.role != role
	e.role, e.leader = role, h
	e.mu.Unlock()
	if changed && e.cfg.Hooks.Observe != nil {
		e.cfg.Hooks.Observe(h)
	}
}

// Run takes part in elections until ctx ends; it returns after leadership,
// if any, ended and the lease was released.
func (e *Elector) Run(ctx context.Context) {
	var seen uint64 // the highest term seen in the lease
	for {
		wait := e.cfg.Check/2 + rand.N(e.cfg.Check/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		// A read is answered by any replica of the lease's bucket
		// (JetStream's direct get, one replica picked at random per
		// request): one of a node that is alive but stalled (a SIGSTOP, a
		// long pause) takes the request and never answers. Bound each
		// read, so that such a pick costs one check interval, not the
		// client's default 5 s, and the next read goes elsewhere.
		rctx, cancel := context.WithTimeout(ctx, e.cfg.Check)
		h, ok, err := e.cfg.Lease.Read(rctx)
		cancel()
		if err != nil {
			e.log.Debug("read lease", "err", err)
			continue
		}
		if ok {
			seen = max(seen, h.Term)
			e.observe(Follower, h)
			continue
		}
		e.observe(Follower, Holder{})
		if e.cfg.Hooks.Ready != nil && !e.cfg.Hooks.Ready() {
			continue
		}
		_, last, err := e.cfg.Log.Last(ctx)
		if err != nil {
			e.log.Debug("read log", "err", err)
			continue
		}
		term := max(seen, last) + 1
		if err := e.cfg.Lease.Acquire(ctx, term); err != nil {
			if !errors.Is(err, ErrHeld) {
				e.log.Debug("acquire lease", "err", err)
			}
			continue
		}
		seen = term
		e.log.Info("took the region's lease; catching up before leading", "term", term)
		if err := e.promote(ctx, term); err != nil {
			e.log.Warn("could not lead; giving the lease back", "term", term, "err", err)
			e.cfg.Lease.Release(context.WithoutCancel(ctx))
			continue
		}
		e.lead(ctx, term)
	}
}

// promote runs the Promote hook while renewing the lease: catching up may
// take longer than the lease lives. A lease lost meanwhile ends it.
func (e *Elector) promote(ctx context.Context, term uint64) error {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(e.cfg.Renew)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			rctx, rcancel := context.WithTimeout(pctx, e.cfg.Renew)
			err := e.cfg.Lease.Renew(rctx)
			rcancel()
			switch {
			case errors.Is(err, ErrLost):
				cancel(ErrLost)
				return
			case err != nil && pctx.Err() == nil:
				e.log.Warn("renewing the lease while catching up failed; retrying", "err", err)
			}
		}
	}()
	err := e.cfg.Hooks.Promote(pctx, term)
	lost := context.Cause(pctx)
	cancel(nil)
	<-done // the lease is renewed by one goroutine at a time
	if errors.Is(lost, ErrLost) {
		if err == nil && e.cfg.Hooks.Abandon != nil {
			e.cfg.Hooks.Abandon(term)
		}
		return fmt.Errorf("lease lost while catching up: %w", ErrLost)
	}
	return err
}

// lead runs the leader's duties for term while the lease is renewed.
func (e *Elector) lead(ctx context.Context, term uint64) {
	e.observe(Leader, Holder{Node: e.cfg.Node, Term: term})
	e.log.Info("leading the region", "term", term)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.cfg.Hooks.Lead(lctx, term)
	}()
	t := time.NewTicker(e.cfg.Renew)
	defer t.Stop()
	renewed := time.Now()
	why := "node stopping"
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-done:
			why = "the node stopped leading (fenced by a newer leader, or unable to take writes)"
			break loop
		case <-t.C:
		}
		// The lease runs from when the server stored the renewal, which
		// is after it was sent: count from the sending, to be safe.
		sent := time.Now()
		rctx, rcancel := context.WithTimeout(ctx, e.cfg.Renew)
		err := e.cfg.Lease.Renew(rctx)
		rcancel()
		switch {
		case err == nil:
			if time.Since(renewed) > e.cfg.Lease.TTL() {
				e.log.Info("the lease is renewed again")
			}
			renewed = sent
		case errors.Is(err, ErrLost):
			why = "lease lost"
			break loop
		default:
			// The bucket is out of reach (its stream electing a leader,
			// this node cut off). Leading on is safe: whatever this node
			// acknowledges it appended to the region log first, which a
			// successor's term marker fences off; and it stops as soon
			// as it learns another node holds the lease.
			e.log.Warn("renewing the lease failed; retrying", "err", err, "since", time.Since(renewed).Round(time.Millisecond))
		}
	}
	cancel()
	<-done
	e.cfg.Lease.Release(context.WithoutCancel(ctx))
	e.log.Warn("stopped leading the region", "term", term, "why", why)
	e.observe(Follower, Holder{})
}
