package testbed

import (
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/gateway/config"
)

func TestLifecycleFaultsParse(t *testing.T) {
	base := `
regions: [a, b]
workload: {rate: 10, keys: 10}
duration: 10s
`
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"restore without a backup", `faults: [{at: 2s, for: 1s, kill: a, wipe: true, restore: true}]`, "needs an earlier backup of a"},
		{"restore without wipe", `faults: [{at: 1s, backup: a}, {at: 2s, for: 1s, kill: a, restore: true}]`, "only goes with kill and wipe"},
		{"corrupt no keys", `faults: [{at: 2s, corrupt: {region: a, keys: 0}}]`, "corrupt.keys"},
		{"corrupt unknown region", `faults: [{at: 2s, corrupt: {region: z, keys: 3}}]`, "not one of the regions"},
		{"corrupt with for", `faults: [{at: 2s, for: 1s, corrupt: {region: a, keys: 3}}]`, "instantaneous"},
		{"unknown setting", `settings: {replication.stream_max_ag: 5s}`, "no key \"stream_max_ag\""},
		{"bad setting value", `settings: {replication.stream_max_age: soon}`, "settings.replication.stream_max_age"},
		{"negative repairs", `checks: {anti_entropy: {min_repaired: -1}}`, "min_repaired"},
	} {
		_, err := Parse([]byte(base+c.yaml), false)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
	sc, err := Parse([]byte(base+`
settings: {replication.stream_max_age: 5s, anti_entropy.interval: 1s, tombstones.grace: 0s, replication.batch: "64", http.max_value_bytes: 2MiB}
faults:
  - {at: 1s, backup: a}
  - {at: 2s, for: 1s, kill: a, wipe: true, restore: true}
  - {at: 4s, corrupt: {region: b, keys: 5}}
checks: {anti_entropy: {min_repaired: 2}, reseeds: {min: 1}}
`), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.Faults[1].String(); got != "kill a, wipe its data and restore its backup" {
		t.Errorf("fault string %q", got)
	}
	if got := sc.Faults[2].String(); got != "corrupt 5 records of b" {
		t.Errorf("fault string %q", got)
	}
	c := config.Default()
	if err := applySettings(c, sc.Settings); err != nil {
		t.Fatal(err)
	}
	if c.Replication.StreamMaxAge != 5*time.Second || c.AntiEntropy.Interval != time.Second || c.Tombstones.Grace != 0 ||
		c.Replication.Batch != 64 || c.HTTP.MaxValueBytes != 2<<20 {
		t.Errorf("settings not applied: %+v %+v %+v", c.Replication, c.AntiEntropy, c.Tombstones)
	}
}

func TestLifecycleChecks(t *testing.T) {
	life := map[string]LifecycleStats{"a": {Repaired: 3, Reseeds: 1}, "b": {Damaged: 4, Repaired: 5}}
	if r := CheckAntiEntropy(life, AntiEntropyBound{MinRepaired: 8}); !r.Pass {
		t.Errorf("8 repaired, min 8: %+v", r)
	}
	if r := CheckAntiEntropy(life, AntiEntropyBound{MinRepaired: 9}); r.Pass {
		t.Errorf("8 repaired, min 9 passed: %+v", r)
	}
	life["b"] = LifecycleStats{Damaged: 4}
	if r := CheckAntiEntropy(life, AntiEntropyBound{}); r.Pass {
		t.Errorf("a damaged region without repairs passed: %+v", r)
	}
	if r := CheckReseeds(life, CountBound{Min: 1}); !r.Pass {
		t.Errorf("1 re-seed, min 1: %+v", r)
	}
	if r := CheckReseeds(life, CountBound{Min: 2}); r.Pass {
		t.Errorf("1 re-seed, min 2 passed: %+v", r)
	}
}
