package store

import (
	"time"

	"github.com/dgraph-io/badger/v4"
)

// hooks adjust a store for the package's tests: smaller Badger files, a
// tiny key filter, faster background checks. They are not part of Options,
// which holds only what a deployment sets; Open runs with the zero value,
// which changes nothing.
type hooks struct {
	// keyFilterMin, if positive, replaces keyFilterMin as the key filter's
	// first-layer size, so that a few keys force the filter to grow.
	keyFilterMin uint
	// tuneBadger, if set, adjusts Badger's options last (small memtables
	// and value-log files, so that flushes, compactions and value-log
	// rewrites happen after little data).
	tuneBadger func(badger.Options) badger.Options
	// valueLogGC is how often the store reclaims value-log space
	// (valuelog.go): 0 means defaultValueLogGCInterval, negative never.
	valueLogGC time.Duration
	// spaceCheck is how often free space is read in the background
	// (storage.go): 0 means defaultSpaceCheckInterval.
	spaceCheck time.Duration
	// observeWait bounds WaitObserved (observe.go): 0 means ObserveWait.
	observeWait time.Duration
}

// withDefaults returns h with every unset interval at its default.
func (h hooks) withDefaults() hooks {
	if h.valueLogGC == 0 {
		h.valueLogGC = defaultValueLogGCInterval
	}
	if h.spaceCheck <= 0 {
		h.spaceCheck = defaultSpaceCheckInterval
	}
	if h.observeWait <= 0 {
		h.observeWait = ObserveWait
	}
	return h
}
