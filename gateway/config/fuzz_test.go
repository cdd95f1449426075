package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad loads any YAML file (with any one GEOGATE_ variable): Load
// never panics, and a config it returns is one Validate accepts.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(baseYAML), "GEOGATE_HTTP__LISTEN=127.0.0.1:9999")
	f.Add([]byte(baseYAML+"rules:\n  - name: r\n    match: 'key startsWith \"a\"'\n    strategy: siblings\n"), "")
	f.Add([]byte(baseYAML+"topology: {kind: star, hub: eu-west}\nhttp: {max_value_bytes: 2MiB}\n"), "GEOGATE_LOG__LEVEL=debug")
	f.Add([]byte("region: [\n"), "")
	f.Add([]byte(baseYAML+"storage: {min_free_bytes: -1}\n"), "GEOGATE_NATS__REPLICAS=9")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, yaml []byte, env string) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, yaml, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, []string{env}, nil)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load returned a config Validate refuses: %v", err)
		}
	})
}
