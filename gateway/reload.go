package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/rules"
)

// DefaultRulesPoll is how often WatchRules looks at the rule file when
// given no interval.
const DefaultRulesPoll = time.Second

// WatchRules hot-reloads the node's rules from path (a rule file or the
// region's config file, whose other keys are ignored and not reloaded)
// until ctx is done. It polls the file every `every` (DefaultRulesPoll
// when <= 0) and reloads when its modification time, size or identity
// changed and then stayed the same for one more poll (so a file is not
// loaded half-written): polling, unlike change notifications, also follows
// configuration tools that replace the file by renaming another onto it.
// An empty file is an error, never "no rules".
//
// A reload reads the file, parses its rules strictly (rules.ParseRules),
// runs every check `geogate rules lint` runs (rules.Lint under the node's
// regions: errors refuse the file, warnings are logged), compiles them
// and, only if every step succeeded, replaces the rule set atomically:
// requests in flight finish under the set they started with. A file
// without a rules: key (missing or misspelt) is an error, never "no rules,
// so every key lww" (unless the node runs the default rules because its
// config had none: then nothing changes). On any failure the current rules
// stay in effect and the reason is logged at error level with located
// diagnostics; the same content is not retried until the file changes
// again. Each attempt counts in geogate_rule_reloads_total{result="ok|error"}
// and sets geogate_rules_last_reload_successful; a change that leaves the
// rule list as it was is logged at debug level and not counted. A change
// of other keys of the file is logged at warning level with the keys,
// which take effect only after a restart.
//
// The first stable state of the file is compared with the rules the node
// runs, so an edit made between loading the config and WatchRules
// starting is not missed. WatchRules blocks; run it in its own goroutine.
func (n *Node) WatchRules(ctx context.Context, path string, every time.Duration) {
	if every <= 0 {
		every = DefaultRulesPoll
	}
	log := n.log.With("file", path)
	reloads := n.reloadCounter()
	last, err := os.Stat(path)
	if err != nil {
		log.Error("cannot watch the rule file; rules will not hot-reload until it is readable", "err", err)
	}
	keys := fileKeys(path)  // the other settings, to say which changes need a restart
	var pending os.FileInfo // a change not yet stable for one poll
	// The file may have changed between the node loading it and the Stat
	// above: the first stable state is compared with the running rules
	// once (a no-op when they are the same).
	first := true
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		info, err := os.Stat(path)
		if err != nil {
			if last != nil { // log the disappearance once, not every tick
				log.Error("rule file unreadable; keeping the current rules", "err", err)
				reloads.WithLabelValues("error").Inc()
				n.book.reloadFailed()
			}
			last, pending = nil, nil
			continue
		}
		if last != nil && sameFile(last, info) && !first {
			pending = nil
			continue
		}
		// Changed: wait until it has stayed the same for one poll, so a
		// file caught while being written is not loaded half-written.
		if pending == nil || !sameFile(pending, info) {
			pending = info
			continue
		}
		last, pending, first = info, nil, false
		if now := fileKeys(path); now != nil {
			if changed := changedKeys(keys, now); len(changed) > 0 && keys != nil {
				if topologyKeys(changed) { // topology_reload.go: regions and topology reload too
					if what, err := n.reloadTopology(ctx, path); err != nil {
						log.Error("regions and topology reload failed; keeping the current ones", "err", err)
					} else {
						log.Info("regions and topology reloaded", "now", what)
					}
					changed = slices.DeleteFunc(changed, func(k string) bool { return topologyKeys([]string{k}) })
				}
				if len(changed) > 0 {
					log.Warn("config keys changed in the file; they take effect only after a restart (rules, regions and topology reload now)", "keys", strings.Join(changed, ", "))
				}
			}
			keys = now
		}
		count, changed, err := n.reloadRules(path)
		switch {
		case err != nil:
			reloads.WithLabelValues("error").Inc()
			n.book.reloadFailed()
			log.Error("rules reload failed; keeping the current rules", "err", err)
		case !changed:
			log.Debug("rule file changed but its rules did not")
		default:
			reloads.WithLabelValues("ok").Inc()
			log.Info("rules reloaded", "rules", count)
		}
	}
}

// sameFile reports whether two stats of one path show the same content:
// the same file (a rename replaces it), size and modification time.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// reloadRules reads, parses and compiles the rules of path and installs
// them. It returns the number of rules, and changed=false (installing
// nothing) when they equal the current ones. On error nothing changes.
func (n *Node) reloadRules(path string) (count int, changed bool, err error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return 0, false, fmt.Errorf("read: %w", err)
	}
	if len(bytes.TrimSpace(src)) == 0 {
		// Never read as "no rules, so the default": an empty file is a
		// write in progress or a mistake.
		return 0, false, errors.New("the file is empty")
	}
	specs, err := rules.ParseRules(src, path)
	if errors.Is(err, rules.ErrNoRules) && n.book.status().Source == "default" {
		return 0, false, nil // started without rules, still none: nothing changes
	}
	if err != nil {
		return 0, false, err
	}
	if slices.Equal(specs, currentSpecs(n.rules())) {
		return len(specs), false, nil
	}
	opts := n.ruleOptions()
	var lintErrs []string
	for _, d := range rules.Lint(src, path, opts) {
		if d.Severity == rules.SeverityError {
			lintErrs = append(lintErrs, d.String())
			continue
		}
		n.log.Warn("rule lint warning", "finding", d.String())
	}
	if len(lintErrs) > 0 {
		return 0, false, errors.New(strings.Join(lintErrs, "\n"))
	}
	set, err := rules.Compile(specs, opts)
	if err != nil {
		return 0, false, err // not reached: lint reports what Compile refuses
	}
	n.setRules(set, path)
	return len(specs), true, nil
}

// currentSpecs returns the specs of a compiled set, as written.
func currentSpecs(set *rules.Set) []rules.Spec {
	rs := set.Rules()
	out := make([]rules.Spec, len(rs))
	for i, r := range rs {
		out[i] = r.Spec()
	}
	return out
}

// reloadCounter returns geogate_rule_reloads_total on the node's registry,
// registering it on first use (a second WatchRules shares it).
func (n *Node) reloadCounter() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geogate_rule_reloads_total",
		Help: "Hot reloads of the rule file by result: ok (new rules in effect) or error (old rules kept).",
	}, []string{"result"})
	if err := n.metrics.reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			// The name and labels are fixed, so only a programming error
			// gets here; count into an unregistered vector rather than
			// stop reloading.
			n.log.Error("cannot register geogate_rule_reloads_total", "err", err)
			return c
		}
		c = already.ExistingCollector.(*prometheus.CounterVec)
	}
	c.WithLabelValues("ok")
	c.WithLabelValues("error")
	return c
}

// fileKeys returns the settings of a YAML file other than rules, flattened
// to key paths (a.b.c) with their values in JSON, or nil when the file
// cannot be read or parsed.
func fileKeys(path string) map[string]string {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var doc map[string]any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil
	}
	delete(doc, "rules")
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, e := range m {
				walk(strings.TrimPrefix(prefix+"."+k, "."), e)
			}
			return
		}
		b, _ := json.Marshal(v) //nolint:errchkjson // YAML values encode
		out[prefix] = string(b)
	}
	walk("", doc)
	return out
}

// changedKeys lists the keys added, removed or changed from a to b, sorted.
func changedKeys(a, b map[string]string) []string {
	var out []string
	for k, v := range b {
		if a[k] != v {
			out = append(out, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
