package config

import (
	"testing"

	"pgregory.net/rapid"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"1MiB", 1 << 20, true},
		{"1mib", 1 << 20, true},
		{"512 KiB", 512 << 10, true},
		{"1GiB", 1 << 30, true},
		{"1G", 1 << 30, true},
		{"1GB", 1_000_000_000, true},
		{"2kb", 2000, true},
		{"1.5KiB", 1536, true},
		{"7B", 7, true},
		{" 3 TiB ", 3 << 40, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"1 parsec", 0, false},
		{"1.2.3", 0, false},
		{"1e3", 0, false},
		{"99999999999TiB", 0, false},
		{"9223372036854775807", 1<<63 - 1, true},
		{"9223372036854775808", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if s := ByteSize(1536 << 10).String(); s != "1536KiB" {
		t.Errorf("String = %q", s)
	}
	if s := ByteSize(1000).String(); s != "1000B" {
		t.Errorf("String = %q", s)
	}
}

// TestByteSizeRoundTrip: String is read back by ParseByteSize exactly.
func TestByteSizeRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var b ByteSize
		if rapid.Bool().Draw(t, "aligned") {
			b = ByteSize(rapid.Int64Range(-1<<20, 1<<20).Draw(t, "n")) << (10 * rapid.IntRange(0, 3).Draw(t, "unit"))
		} else {
			b = ByteSize(rapid.Int64().Draw(t, "raw"))
		}
		got, err := ParseByteSize(b.String())
		if err != nil || got != b {
			t.Fatalf("ParseByteSize(%q) = %d, %v; want %d", b.String(), got, err, b)
		}
	})
}
