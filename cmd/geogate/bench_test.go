package main

import (
	"strings"
	"testing"
)

// TestBenchFlags: --lag takes a duration; --lag-seconds, its former
// spelling, is still read (with a warning naming --lag) but refused beside
// --lag or when not a positive number; bad durations and unknown parts
// are refused before anything runs.
func TestBenchFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"bench", "--lag", "0s"}, []string{"--lag must be a positive duration"}},
		{[]string{"bench", "--lag", "5"}, []string{`invalid argument "5" for "--lag"`}},
		{[]string{"bench", "--lag-seconds", "0"}, []string{"use --lag with a duration"}},
		{[]string{"bench", "--lag-seconds", "2", "--lag", "2s"}, []string{"give only --lag"}},
		// Read, with a warning; the run stops at the unknown part.
		{[]string{"bench", "--lag-seconds", "3", "--only", "bogus"}, []string{"Flag --lag-seconds has been deprecated, use --lag", `no benchmark part "bogus"`}},
		{[]string{"bench", "--only", "writes,bogus"}, []string{`no benchmark part "bogus": the parts are writes, rules, replication, security, nodes, lifecycle`}},
	} {
		out, err := run(c.args...)
		if err == nil {
			t.Errorf("geogate %s succeeded; want an error", strings.Join(c.args, " "))
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out+err.Error(), w) {
				t.Errorf("geogate %s: err %v, output %q; want %q", strings.Join(c.args, " "), err, out, w)
			}
		}
	}
}
