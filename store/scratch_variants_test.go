package store

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func TestScratchVariants(t *testing.T) {
	if os.Getenv("GEOGATE_SCRATCH") == "" {
		t.Skip()
	}
	rec, outbox := storeWriteShape(t)
	t.Logf("record %d bytes, outbox %d bytes, doc %d", len(rec), len(outbox), len(benchDoc))
	combined := append(slices.Clone(rec), outbox...)
	type v struct {
		name  string
		fn    func(db *badger.DB, i int) error
		db    *badger.DB
		rates []float64
	}
	vs := []*v{
		{name: "raw 1 doc", fn: rawWrite},
		{name: "2 entries rec+outbox", fn: func(db *badger.DB, i int) error {
			key := fmt.Appendf(recordKey("bench/"), "%d", i)
			return db.Update(func(txn *badger.Txn) error {
				if err := txn.Set(key, rec); err != nil {
					return err
				}
				return txn.Set(seqKey(prefixOutbox, uint64(i)+1), outbox)
			})
		}},
		{name: "1 entry combined size", fn: func(db *badger.DB, i int) error {
			key := fmt.Appendf(recordKey("bench/"), "%d", i)
			return db.Update(func(txn *badger.Txn) error { return txn.Set(key, combined) })
		}},
		{name: "2 entries small", fn: func(db *badger.DB, i int) error {
			key := fmt.Appendf(recordKey("bench/"), "%d", i)
			return db.Update(func(txn *badger.Txn) error {
				if err := txn.Set(key, benchDoc); err != nil {
					return err
				}
				return txn.Set(seqKey(prefixOutbox, uint64(i)+1), []byte("x"))
			})
		}},
		{name: "1 entry record only", fn: func(db *badger.DB, i int) error {
			key := fmt.Appendf(recordKey("bench/"), "%d", i)
			return db.Update(func(txn *badger.Txn) error { return txn.Set(key, rec) })
		}},
	}
	for _, x := range vs {
		x.db = openRawBadger(t, false)
	}
	const n, chunks = 24000, 6
	for c := range chunks {
		for _, x := range vs {
			base := c * (n / chunks)
			x.rates = append(x.rates, writeRate(t, n/chunks, 1, func(i int) error { return x.fn(x.db, base+i) }))
		}
	}
	for _, x := range vs {
		r := slices.Sorted(slices.Values(x.rates))
		t.Logf("%-24s %7.0f/s", x.name, (r[2]+r[3])/2)
	}
}
