package config

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestLoadRefusesLintErrors: a config whose rules `geogate rules lint`
// rejects does not load, and each rule problem names the file, line and
// column lint shows it at.
func TestLoadRefusesLintErrors(t *testing.T) {
	tests := []struct {
		name, rules, key, text string
		line, col              int
	}{
		{"order-dependent merge", "rules:\n  - name: m\n    match: 'true'\n    strategy: custom\n    merge: 'merge(siblings)'\n",
			"rules[0].merge", "depends on the order of the siblings", 10, 13},
		{"catch-all first", "rules:\n  - {name: all, match: 'true', strategy: lww}\n  - {name: carts, match: 'key startsWith \"cart/\"', strategy: siblings}\n",
			"rules[1].match", `rule "all" (#1) before it matches every key`, 8, 27},
		{"shadowed prefix", "rules:\n  - {name: a, match: 'key startsWith \"cart\"', strategy: lww}\n  - {name: b, match: 'key startsWith \"cart/eu/\"', strategy: siblings}\n  - {name: d, match: 'true', strategy: lww}\n",
			"rules[1].match", "put the narrower rule first", 8, 23},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, t.TempDir(), baseYAML+tt.rules, nil, nil)
			if err == nil {
				t.Fatal("Load accepted rules lint rejects")
			}
			var found *FieldError
			for _, e := range unjoin(err) {
				var fe *FieldError
				if errors.As(e, &fe) && fe.Key == tt.key {
					found = fe
				}
			}
			if found == nil || !strings.Contains(found.Reason, tt.text) {
				t.Fatalf("no %s error containing %q:\n%v", tt.key, tt.text, err)
			}
			at := regexp.MustCompile(`\.yaml:(\d+):(\d+)$`).FindStringSubmatch(found.At)
			if at == nil || at[1] != strconv.Itoa(tt.line) || at[2] != strconv.Itoa(tt.col) {
				t.Fatalf("located at %q, want line %d column %d (%v)", found.At, tt.line, tt.col, err)
			}
			if !strings.HasSuffix(found.Error(), "; at "+found.At) || strings.Contains(err.Error(), "\n ") {
				t.Fatalf("rendered %q", err)
			}
		})
	}
}
