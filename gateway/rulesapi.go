package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/rules"
)

// startingRules checks the config's rules as `geogate rules lint` does
// (config.RuleFindings: errors refuse the start, warnings are logged) and
// compiles them.
func (n *Node) startingRules() (*rules.Set, error) {
	var errs []error
	for _, d := range n.cfg.RuleFindings() {
		if d.Severity == rules.SeverityError {
			errs = append(errs, errors.New(d.String()))
			continue
		}
		n.log.Warn("rule lint warning", "finding", d.String())
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("rules: %w", errors.Join(errs...))
	}
	set, err := rules.Compile(n.cfg.Rules, n.ruleOptions())
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if slices.Equal(n.cfg.Rules, config.DefaultRules()) {
		n.log.Info("no rules configured: every key is last-write-wins (rule \"default\")")
	}
	return set, nil
}

// setRules installs set as the rule set in effect, loaded from source.
func (n *Node) setRules(set *rules.Set, source string) {
	// One install at a time (the API and the file watcher may race), so
	// the status and metrics describe the set in effect.
	n.installing.Lock()
	defer n.installing.Unlock()
	n.ruleSet.Store(set)
	n.book.installed(set, source)
}

// rulesSource names where a node's first rule set comes from.
func rulesSource(cfg *config.Config, opts Options) string {
	switch {
	case slices.Equal(cfg.Rules, config.DefaultRules()):
		return "default"
	case opts.RulesFile != "":
		return opts.RulesFile
	}
	return "config"
}

// readStatus is the HTTP status of a read showing outcome o.
func readStatus(o rules.Outcome) int {
	switch o {
	case rules.OutcomeOne:
		return http.StatusOK
	case rules.OutcomeSiblings:
		return http.StatusMultipleChoices
	}
	return http.StatusNotFound
}

// conflictedKey is one entry of GET /v1/kv?conflicted=true.
type conflictedKey struct {
	Key string `json:"key"`
	// Rule governs the key; Error says which expression failed, if one
	// did (the key then keeps every version).
	Rule     string `json:"rule"`
	Versions int    `json:"versions"`
	Live     int    `json:"live"`
	Error    string `json:"error,omitempty"`
}

// listConflicted answers GET /v1/kv?conflicted=true: the keys with the
// prefix whose frontier holds more than one version (CouchDB's _conflicts
// view), in byte order, with their rule. Keys come from the conflicted
// index (a store scan until it is seeded) and each is read back from the
// store, so a key shown holds siblings now. The index is the store
// observer's: the listing first waits for the changes committed before it.
func (n *Node) listConflicted(w http.ResponseWriter, prefix, after string, limit int) {
	if err := n.store.WaitObserved(); err != nil {
		writeError(w, err)
		return
	}
	var out []conflictedKey
	add := func(key string, rec conflict.Record) bool {
		if len(rec.Versions) < 2 {
			return true
		}
		e := conflictedKey{Key: key, Versions: len(rec.Versions), Live: len(rec.Live())}
		ex := n.rules().Explain(key, n.cfg.Region, rec.Versions)
		if ex.Rule != nil {
			e.Rule = ex.Rule.Name()
		}
		if ex.Err != nil {
			e.Error = ex.Err.Error()
		}
		out = append(out, e)
		return len(out) <= limit
	}
	var err error
	if candidates, seeded := n.book.conflicted.candidates(prefix, after); seeded {
		for _, key := range candidates {
			rec, ok, gerr := n.store.Get(key)
			if gerr != nil {
				err = gerr
				break
			}
			if ok && !add(key, rec) {
				break
			}
		}
	} else {
		err = n.store.Scan(func(key string, rec conflict.Record) bool {
			switch {
			case !strings.HasPrefix(key, prefix):
				return key < prefix // keys are in byte order: stop past the prefix
			case key <= after:
				return true
			}
			return add(key, rec)
		})
	}
	if err != nil {
		writeError(w, err)
		return
	}
	keys := make([]string, 0, len(out))
	for _, e := range out {
		keys = append(keys, e.Key)
	}
	ans := map[string]any{"keys": keys, "conflicted": out}
	if len(out) > limit {
		ans["keys"], ans["conflicted"], ans["next"] = keys[:limit], out[:limit], keys[limit-1]
	}
	if out == nil {
		ans["conflicted"] = []conflictedKey{}
	}
	writeJSON(w, http.StatusOK, ans)
}

// matchStep is one rule tried by explain.
type matchStep struct {
	Rule   string `json:"rule"`
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// explainRead is what a read of the key shows under its rule.
type explainRead struct {
	Status   int               `json:"status"`
	Outcome  string            `json:"outcome"`
	Value    json.RawMessage   `json:"value,omitempty"`
	Siblings []json.RawMessage `json:"siblings,omitempty"`
	// Kept and Discarded name the versions (dots) of a collapse.
	Kept      string   `json:"kept,omitempty"`
	Discarded []string `json:"discarded,omitempty"`
}

// explainAnswer is the body of GET /v1/admin/rules/explain.
type explainAnswer struct {
	Key    string      `json:"key"`
	Region string      `json:"region"`
	Rules  RulesStatus `json:"rules"`
	// Rule governs the key ("" when none does); Strategy is the one in
	// effect (siblings when the rule holds the key after a failure).
	Rule     string        `json:"rule"`
	Strategy string        `json:"strategy,omitempty"`
	Held     string        `json:"held,omitempty"`
	Tried    []matchStep   `json:"tried"`
	Versions []metaVersion `json:"versions"`
	Read     explainRead   `json:"read"`
	// SupersedesWithoutContext: a write without X-Geo-Context replaces
	// the versions shown (lww, home_region) or adds a sibling.
	SupersedesWithoutContext bool            `json:"supersedes_without_context"`
	Resolver                 string          `json:"resolver,omitempty"`
	Merged                   json.RawMessage `json:"merged,omitempty"`
	Errors                   []string        `json:"errors,omitempty"`
}

// handleExplain answers GET /v1/admin/rules/explain?key=K: which rule
// governs K and how it resolves K's versions here, with every expression
// that failed.
func (n *Node) handleExplain(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r, "GET")
		return
	}
	key := r.URL.Query().Get("key")
	if err := validateKey(key); err != nil {
		writeError(w, err)
		return
	}
	rec, _, err := n.store.Get(key)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.explain(n.rules(), n.book.status(), key, rec.Versions))
}

// explain says how set treats key's versions at this region (explainAnswer;
// status describes set).
func (n *Node) explain(set *rules.Set, status RulesStatus, key string, versions []conflict.Version) explainAnswer {
	ex := set.Explain(key, n.cfg.Region, versions)
	ans := explainAnswer{Key: key, Region: n.cfg.Region, Rules: status, Versions: metaVersions(versions),
		Resolver: ex.Resolver, Merged: ex.Merged}
	for _, s := range ex.Steps {
		st := matchStep{Rule: s.Rule, Result: s.Result}
		if s.Err != nil {
			st.Error = s.Err.Error()
		}
		ans.Tried = append(ans.Tried, st)
	}
	if ex.Rule != nil {
		ans.Rule, ans.Strategy = ex.Rule.Name(), string(ex.Rule.Strategy())
		ans.SupersedesWithoutContext = ex.Rule.SupersedesWithoutContext()
		if h := ex.Rule.Held(); h != nil {
			ans.Held = h.Error()
		}
	}
	res := ex.Resolution
	ans.Read = explainRead{Status: readStatus(res.Outcome), Outcome: res.Outcome.String(), Value: res.Value, Siblings: res.Siblings}
	if res.Kept != nil {
		ans.Read.Kept = res.Kept.Dot.String()
		for _, v := range res.Discarded {
			ans.Read.Discarded = append(ans.Read.Discarded, v.Dot.String())
		}
	}
	for _, e := range unjoinErrors(ex.Err) {
		ans.Errors = append(ans.Errors, e.Error())
	}
	return ans
}

// metaVersions renders a frontier as ?meta=true shows it.
func metaVersions(vs []conflict.Version) []metaVersion {
	out := make([]metaVersion, 0, len(vs))
	for _, v := range vs {
		val := v.Value
		if v.Deleted {
			val = json.RawMessage("null")
		}
		out = append(out, metaVersion{Value: val, Origin: v.Origin, HLC: v.HLC, Deleted: v.Deleted, Dot: v.Dot.String()})
	}
	return out
}

// unjoinErrors returns the errors joined in err.
func unjoinErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
