package rules

// Spec is one rule as an operator writes it in the config file (the
// README's Rules section). Expressions are expr-lang source; empty means
// unset. The struct tags are the config keys: an unknown key is a config
// error.
type Spec struct {
	// Name identifies the rule in logs, metrics and the conflict log.
	Name string `koanf:"name" yaml:"name" json:"name"`
	// Match is a boolean expression over key; the first rule whose Match
	// holds for a key governs it.
	Match string `koanf:"match" yaml:"match" json:"match"`
	// Strategy is one of home_region, lww, siblings, custom.
	Strategy string `koanf:"strategy" yaml:"strategy" json:"strategy"`
	// Home (home_region) is an expression over key and value giving the
	// key's home region name.
	Home string `koanf:"home" yaml:"home,omitempty" json:"home,omitempty"`
	// HomeMode (home_region) says what a region other than the home does
	// with a write: forward (default), redirect (307) or reject (421).
	HomeMode string `koanf:"home_mode" yaml:"home_mode,omitempty" json:"home_mode,omitempty"`
	// Fallback (home_region) applies when the home region is unreachable:
	// reject (default, 503), lww or siblings (accept locally).
	Fallback string `koanf:"fallback" yaml:"fallback,omitempty" json:"fallback,omitempty"`
	// Select (custom) scores a version; the highest score wins with a
	// deterministic tie-break (conflict.CompareScored).
	Select string `koanf:"select" yaml:"select,omitempty" json:"select,omitempty"`
	// Merge (custom) computes a new value from the siblings; it runs in the
	// resolver region only and is written as a new version.
	Merge string `koanf:"merge" yaml:"merge,omitempty" json:"merge,omitempty"`
	// OnRead computes the value served for a read from the siblings,
	// without writing.
	OnRead string `koanf:"on_read" yaml:"on_read,omitempty" json:"on_read,omitempty"`
	// Resolver (custom merge) names the region that runs Merge when the
	// rule has no Home; default: the first region of the deployment.
	Resolver string `koanf:"resolver" yaml:"resolver,omitempty" json:"resolver,omitempty"`
}
