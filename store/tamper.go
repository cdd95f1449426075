package store

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/dgraph-io/badger/v4"
)

// TamperReport lists what Tamper did.
type TamperReport struct {
	// Removed and Altered are the keys whose record Tamper deleted or
	// changed a byte of.
	Removed, Altered []string
}

// Tamper damages the store in dir behind its writer's back, as a disk or a
// bug might: it deletes the records of some of n keys picked at random
// (seeded) and flips one byte in the others' stored bytes, leaving their
// checksums as they were. The store must not be open. It is fault
// injection for the testbed's corrupt fault and for tests; geogate never
// calls it. Watermarks are left alone: the events that made those records
// are not delivered again, so only anti-entropy brings them back.
func Tamper(dir string, n int, seed uint64) (TamperReport, error) {
	var rep TamperReport
	db, err := badger.OpenManaged(BadgerOptions(Options{Dir: dir, SmallFootprint: true}))
	if err != nil {
		return rep, fmt.Errorf("tamper %s: %w", dir, err)
	}
	defer db.Close()
	ts := db.MaxVersion()
	rng := rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
	// Reservoir-sample n keys.
	var keys []string
	seen := 0
	err = func() error {
		txn := db.NewTransactionAt(ts, false)
		defer txn.Discard()
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRecord})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key()[len(prefixRecord):])
			seen++
			if len(keys) < n {
				keys = append(keys, k)
			} else if j := rng.IntN(seen); j < n {
				keys[j] = k
			}
		}
		return nil
	}()
	if err != nil {
		return rep, err
	}
	if len(keys) == 0 {
		return rep, errors.New("tamper: the store holds no records")
	}
	txn := db.NewTransactionAt(ts, true)
	defer txn.Discard()
	for i, k := range keys {
		if i%2 == 0 {
			if err := txn.Delete(recordKey(k)); err != nil {
				return rep, err
			}
			rep.Removed = append(rep.Removed, k)
			continue
		}
		item, err := txn.Get(recordKey(k))
		if err != nil {
			return rep, err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return rep, err
		}
		v[1+rng.IntN(len(v)-1)] ^= byte(1 + rng.IntN(255))
		if err := txn.Set(recordKey(k), v); err != nil {
			return rep, err
		}
		rep.Altered = append(rep.Altered, k)
	}
	if err := txn.CommitAt(ts+1, nil); err != nil {
		return rep, fmt.Errorf("tamper: %w", err)
	}
	return rep, nil
}
