package store

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestZZCPU(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	const n = 20000
	for r := 0; r < 2; r++ {
		db := openRawBadger(t, false)
		c0, w0 := cpuNow(), time.Now()
		writeRate(t, n, 1, func(i int) error { return rawWrite(db, i) })
		t.Logf("raw:   cpu %v/write wall %v/write", (cpuNow()-c0)/n, time.Since(w0)/n)
		s := openBenchStore(t, false)
		c0, w0 = cpuNow(), time.Now()
		writeRate(t, n, 1, func(i int) error { return storeWrite(s, i) })
		t.Logf("store: cpu %v/write wall %v/write", (cpuNow()-c0)/n, time.Since(w0)/n)
	}
}
