package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"time"

	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology/link"
)

// Anti-entropy. Replication applies every event once; anti-entropy catches
// what that cannot: a record lost or altered on disk, an event a bug
// skipped. Every anti_entropy.interval a region compares its digest tree
// (store/merkle.go: 65536 buckets of hashed keys, kept by the writer) with
// each peer it pulls from, top-down: the 16 nodes below the root, then the
// children of those that differ, down to the buckets. A bucket that
// differs in two rounds in a row with the same two digests (so no write or
// apply touched it in between: not an event on its way) is repaired: both
// regions list its keys with their records' digests, each sends the other
// the records that differ, and each merges what it receives
// (store.MergeRecords with onlyApplied: only records whose events it has
// applied, so an event still on its way is left to the link). A merge is a
// join: it adds what is missing, never overwrites.
//
// A stored record that fails its checksum is never served (reads answer
// 503 corrupt_record) and is asked of the peers at the next heartbeat
// (repairSuspects).

// aeState is the anti-entropy state (under lifecycle.mu).
type aeState struct {
	// pending holds, per peer, the buckets that differed in the last round
	// with the two digests (this region's, the peer's).
	pending map[string]map[uint32][2]uint64
	// lastFull is when every peer was last compared without error.
	lastFull time.Time
	rounds   int
	lastErr  map[string]string
	// lastDiffer is, per peer, how many buckets differed in its last
	// comparison.
	lastDiffer map[string]int
}

// AntiEntropyStatus is the anti-entropy part of the lifecycle status.
type AntiEntropyStatus struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	Rounds          int     `json:"rounds"`
	// LastFullRound is when this region last compared its records with
	// every peer it pulls from without an error.
	LastFullRound *time.Time `json:"last_full_round,omitempty"`
	// Differing is, per peer, how many buckets differed in the last
	// comparison (events on their way included).
	Differing map[string]int    `json:"differing"`
	Errors    map[string]string `json:"errors,omitempty"`
	// Corrupt lists the keys whose stored record failed its checksum and
	// awaits a repair.
	Corrupt []string `json:"corrupt,omitempty"`
	// Compared counts tree nodes compared with peers, Repaired the records
	// merges from peers changed here (geogate_antientropy_*_total).
	Compared uint64 `json:"ranges_compared"`
	Repaired uint64 `json:"keys_repaired"`
}

// Limits of one comparison.
const (
	// maxNodesPerRequest bounds the digests asked in one request.
	maxNodesPerRequest = 4096
	// maxRepairBuckets bounds the buckets repaired per peer and round.
	maxRepairBuckets = 1024
	// repairRequestBytes bounds the keys (with their hashes) one repair
	// request carries, unless one bucket alone has more; each request costs
	// the peer a scan of its keys.
	repairRequestBytes = 256 << 10
	// maxReplyRecordBytes bounds the records one repair answer carries;
	// the rest are repaired in later rounds.
	maxReplyRecordBytes = 512 << 10
	// maxSuspectsPerRequest bounds the corrupt records asked of a peer at
	// once.
	maxSuspectsPerRequest = 256
	// maxPushBytes bounds the records pushed in one request.
	maxPushBytes = 256 << 10
)

func (lc *lifecycle) aeLoop(ctx context.Context) {
	every := lc.n.cfg.AntiEntropy.Interval
	suspects := time.NewTicker(lc.n.cfg.Replication.Heartbeat)
	defer suspects.Stop()
	var rounds <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		rounds = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-suspects.C:
			lc.repairSuspects(ctx)
		case <-rounds:
			lc.aeRound(ctx)
		}
	}
}

// aeRound compares this region's records with every peer it pulls from.
func (lc *lifecycle) aeRound(ctx context.Context) {
	if !lc.n.store.TreeReady() {
		return
	}
	peers := lc.pullPeers()
	ok := len(peers) > 0
	for _, peer := range peers {
		l := lc.n.link(peer)
		if l == nil || l.Status().State == link.StateReseeding {
			ok = false
			continue
		}
		err := lc.compareWith(ctx, peer)
		lc.mu.Lock()
		if lc.ae.lastErr == nil {
			lc.ae.lastErr = map[string]string{}
		}
		if err != nil {
			lc.ae.lastErr[peer] = err.Error()
			ok = false
		} else {
			delete(lc.ae.lastErr, peer)
		}
		lc.mu.Unlock()
		if err != nil {
			lc.log.Warn("anti-entropy comparison failed", "peer", peer, "err", err)
			lc.m.aeRounds.WithLabelValues("error").Inc()
		} else {
			lc.m.aeRounds.WithLabelValues("ok").Inc()
		}
	}
	lc.mu.Lock()
	lc.ae.rounds++
	if ok {
		lc.ae.lastFull = time.Now()
	}
	lc.mu.Unlock()
	if ok {
		lc.m.aeLastFull.SetToCurrentTime()
	}
}

// compareWith walks the two trees down to the buckets that differ and
// repairs those that differed the same way last round. Each level is asked
// for as the children of the nodes that differed on the level above
// (opNodes with Level l and IDs the parents at level l-1), so a request
// carries a sixteenth of the nodes it asks for.
func (lc *lifecycle) compareWith(ctx context.Context, peer string) error {
	s := lc.n.store
	parents := []uint32{0}
	for level := 1; level <= store.MerkleLevels; level++ {
		ids := children(parents)
		mine, err := s.TreeNodes(level, ids)
		if err != nil {
			return err
		}
		theirs := make([]uint64, 0, len(ids))
		for i := 0; i < len(parents); i += maxNodesPerRequest / store.MerkleFanout {
			chunk := parents[i:min(len(parents), i+maxNodesPerRequest/store.MerkleFanout)]
			rep, err := lc.request(ctx, peer, lifeRequest{Op: opNodes, Level: level, IDs: chunk})
			if err != nil {
				return err
			}
			if len(rep.Digests) != 8*store.MerkleFanout*len(chunk) {
				return errors.New("the peer answered a different number of digests")
			}
			for j := 0; j < len(rep.Digests); j += 8 {
				theirs = append(theirs, binary.LittleEndian.Uint64(rep.Digests[j:]))
			}
		}
		lc.m.compared.Add(uint64(len(ids)))
		var differ []int
		parents = parents[:0:0]
		for i := range ids {
			if mine[i] != theirs[i] {
				differ = append(differ, i)
				parents = append(parents, ids[i])
			}
		}
		if level == store.MerkleLevels {
			return lc.confirmAndRepair(ctx, peer, ids, mine, theirs, differ)
		}
		if len(differ) == 0 {
			return lc.confirmAndRepair(ctx, peer, nil, nil, nil, nil) // forget what differed before
		}
	}
	return nil
}

// children returns the ids of the children of parents, in order.
func children(parents []uint32) []uint32 {
	out := make([]uint32, 0, len(parents)*store.MerkleFanout)
	for _, p := range parents {
		for c := range uint32(store.MerkleFanout) {
			out = append(out, p*store.MerkleFanout+c)
		}
	}
	return out
}

// confirmAndRepair keeps the buckets that differ (ids[differ[i]]) for the
// next round and repairs those that differed with the same digests in the
// last one.
func (lc *lifecycle) confirmAndRepair(ctx context.Context, peer string, ids []uint32, mine, theirs []uint64, differ []int) error {
	next := make(map[uint32][2]uint64, len(differ))
	var confirmed []uint32
	lc.mu.Lock()
	if lc.ae.pending == nil {
		lc.ae.pending, lc.ae.lastDiffer = map[string]map[uint32][2]uint64{}, map[string]int{}
	}
	prev := lc.ae.pending[peer]
	for _, i := range differ {
		pair := [2]uint64{mine[i], theirs[i]}
		next[ids[i]] = pair
		if prev[ids[i]] == pair {
			confirmed = append(confirmed, ids[i])
		}
	}
	lc.ae.pending[peer] = next
	lc.ae.lastDiffer[peer] = len(differ)
	lc.mu.Unlock()
	if len(confirmed) == 0 {
		return nil
	}
	slices.Sort(confirmed)
	if len(confirmed) > maxRepairBuckets {
		confirmed = confirmed[:maxRepairBuckets]
	}
	return lc.repairBuckets(ctx, peer, confirmed)
}

// repairBuckets exchanges the records that differ in buckets with peer.
func (lc *lifecycle) repairBuckets(ctx context.Context, peer string, buckets []uint32) error {
	s := lc.n.store
	all, err := s.KeysInLeaves(buckets)
	if err != nil {
		return err
	}
	byBucket := map[uint32][]store.KeyHash{}
	for _, kh := range all {
		b := store.MerkleLeaf(kh.Key)
		byBucket[b] = append(byBucket[b], kh)
	}
	for len(buckets) > 0 {
		// As many buckets as keep the request within repairKeysPerRequest
		// keys (each request costs the peer a scan of its keys).
		n, size := 0, 0
		for n < len(buckets) && (n == 0 || size+keyBytes(byBucket[buckets[n]]) <= repairRequestBytes) {
			size += keyBytes(byBucket[buckets[n]])
			n++
		}
		chunk := buckets[:n]
		buckets = buckets[n:]
		var mine []store.KeyHash
		for _, b := range chunk {
			mine = append(mine, byBucket[b]...)
		}
		req := lifeRequest{Op: opKeys, IDs: chunk, Keys: make([]wireKeyHash, len(mine))}
		for j, kh := range mine {
			req.Keys[j] = wireKeyHash{K: kh.Key, H: kh.Hash}
		}
		rep, err := lc.request(ctx, peer, req)
		if err != nil {
			return err
		}
		recs, err := fromWire(rep.Records)
		if err != nil {
			return err
		}
		changed, _, err := s.MergeRecords(ctx, recs, true)
		lc.m.repaired.Add(uint64(changed))
		if err != nil {
			return err
		}
		if changed > 0 {
			lc.log.Warn("anti-entropy repaired records from a peer", "peer", peer, "records", changed)
		}
		theirs := make([]store.KeyHash, len(rep.Keys))
		for j, kh := range rep.Keys {
			theirs[j] = store.KeyHash{Key: kh.K, Hash: kh.H}
		}
		if err := lc.push(ctx, peer, store.DiffKeys(mine, theirs)); err != nil {
			return err
		}
	}
	return nil
}

// keyBytes estimates the wire size of keys with their hashes.
func keyBytes(keys []store.KeyHash) int {
	n := 0
	for _, kh := range keys {
		n += len(kh.Key) + 32
	}
	return n
}

// push sends peer this region's records of keys, for it to merge.
func (lc *lifecycle) push(ctx context.Context, peer string, keys []string) error {
	recs, err := lc.n.store.Records(keys)
	if err != nil || len(recs) == 0 {
		return err
	}
	wire := toWire(recs)
	for len(wire) > 0 {
		n, size := 0, 0
		for n < len(wire) && (n == 0 || size < maxPushBytes) {
			size += len(wire[n].R) + len(wire[n].K)
			n++
		}
		if _, err := lc.request(ctx, peer, lifeRequest{Op: opPush, Records: wire[:n]}); err != nil {
			return err
		}
		wire = wire[n:]
	}
	return nil
}

// serveKeys answers opKeys: this region's keys of the buckets, and its
// records of the keys on which the asker differs.
func (lc *lifecycle) serveKeys(req lifeRequest) (lifeReply, error) {
	s := lc.n.store
	mine, err := s.KeysInLeaves(req.IDs)
	if err != nil {
		return lifeReply{}, err
	}
	theirs := make([]store.KeyHash, len(req.Keys))
	for i, kh := range req.Keys {
		theirs[i] = store.KeyHash{Key: kh.K, Hash: kh.H}
	}
	recs, err := s.Records(store.DiffKeys(mine, theirs))
	if err != nil {
		return lifeReply{}, err
	}
	wire, size := toWire(recs), 0
	for i, w := range wire {
		if size += len(w.K) + len(w.R); size > maxReplyRecordBytes && i > 0 {
			wire = wire[:i] // the rest in a later round
			break
		}
	}
	rep := lifeReply{Keys: make([]wireKeyHash, len(mine)), Records: wire}
	for i, kh := range mine {
		rep.Keys[i] = wireKeyHash{K: kh.Key, H: kh.Hash}
	}
	return rep, nil
}

// repairSuspects asks the peers for the records of keys whose stored
// record failed its checksum, and merges them over the damaged ones.
func (lc *lifecycle) repairSuspects(ctx context.Context) {
	keys, _ := lc.n.store.Suspects()
	if len(keys) == 0 {
		return
	}
	slices.Sort(keys)
	keys = keys[:min(len(keys), maxSuspectsPerRequest)] // the rest at the next heartbeat
	for _, peer := range lc.pullPeers() {
		rep, err := lc.request(ctx, peer, lifeRequest{Op: opRecords, Names: keys})
		if err != nil {
			lc.log.Debug("repair of corrupt records", "peer", peer, "err", err)
			continue
		}
		recs, err := fromWire(rep.Records)
		if err != nil {
			continue
		}
		changed, _, err := lc.n.store.MergeRecords(ctx, recs, true)
		lc.m.repaired.Add(uint64(changed))
		if err != nil {
			lc.log.Warn("repair of corrupt records", "peer", peer, "err", err)
			continue
		}
		if changed > 0 {
			lc.log.Warn("repaired records whose stored checksum failed", "peer", peer, "records", changed)
		}
		if keys, _ = lc.n.store.Suspects(); len(keys) == 0 {
			return
		}
		slices.Sort(keys)
		keys = keys[:min(len(keys), maxSuspectsPerRequest)]
	}
}

// aeStatus reports anti-entropy's state.
func (lc *lifecycle) aeStatus() AntiEntropyStatus {
	st := AntiEntropyStatus{IntervalSeconds: lc.n.cfg.AntiEntropy.Interval.Seconds(), Differing: map[string]int{},
		Compared: lc.m.compared.Load(), Repaired: lc.m.repaired.Load()}
	st.Corrupt, _ = lc.n.store.Suspects()
	slices.Sort(st.Corrupt)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	st.Rounds = lc.ae.rounds
	if !lc.ae.lastFull.IsZero() {
		t := lc.ae.lastFull
		st.LastFullRound = &t
	}
	for p, n := range lc.ae.lastDiffer {
		st.Differing[p] = n
	}
	if len(lc.ae.lastErr) > 0 {
		st.Errors = map[string]string{}
		for p, e := range lc.ae.lastErr {
			st.Errors[p] = e
		}
	}
	return st
}
