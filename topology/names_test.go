package topology

import (
	"strings"
	"testing"
)

func TestValidRegion(t *testing.T) {
	for name, want := range map[string]bool{
		"us-east": true, "a": true, "0": true, "-": true, strings.Repeat("z", MaxRegionLen): true,
		"": false, "US": false, "us_east": false, "us.east": false, "us east": false, "é": false,
		strings.Repeat("z", MaxRegionLen+1): false, "a/b": false, "a>": false, ReservedRegion: false,
	} {
		if got := ValidRegion(name); got != want {
			t.Errorf("ValidRegion(%q) = %v, want %v", name, got, want)
		}
	}
}
