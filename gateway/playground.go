package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"

	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/rules"
)

// maxPlaygroundBytes bounds a rule set posted to the playground.
const maxPlaygroundBytes = 1 << 20

// playgroundRequest is the body of POST /v1/admin/rules/playground.
type playgroundRequest struct {
	// Rules is a rule file as `geogate rules lint` reads it: a rules:
	// list, or a whole region config.
	Rules string `json:"rules"`
	// Key, if set, is explained under the rules with its versions here.
	Key string `json:"key"`
}

// finding is one lint diagnostic.
type finding struct {
	Severity string `json:"severity"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
	// Text is the finding as `geogate rules lint` prints it.
	Text string `json:"text"`
}

// ruleVerdict is what one rule of a candidate set would do with a key's
// versions if it governed the key.
type ruleVerdict struct {
	Rule     string `json:"rule"`
	Strategy string `json:"strategy"`
	// Match is "match", "no match" or "failed" (the rule's match alone,
	// whatever the rules before it say); Governs marks the rule the set
	// picks (the first that matches, or holds the key after a failure).
	Match   string      `json:"match"`
	Governs bool        `json:"governs"`
	Read    explainRead `json:"read"`
	Error   string      `json:"error,omitempty"`
}

// playgroundAnswer is the answer of POST /v1/admin/rules/playground.
type playgroundAnswer struct {
	// OK is true when the rule set has no lint error (a region would load
	// it).
	OK       bool      `json:"ok"`
	Findings []finding `json:"findings"`
	// Rules lists the set's rules (when it parses).
	Rules []rules.Spec `json:"rules"`
	// Candidate explains Key under the posted set, Current under the set
	// in effect; Each says what every rule of the posted set would do.
	Candidate *explainAnswer `json:"candidate,omitempty"`
	Current   *explainAnswer `json:"current,omitempty"`
	Each      []ruleVerdict  `json:"each,omitempty"`
}

// handlePlayground serves /v1/admin/rules/playground: GET returns the rule
// set in effect as a rule file; POST lints a rule file with the checks of
// `geogate rules lint` (rules.Lint, under this region's regions) and, with
// a key, explains the key's versions here under it. It changes nothing.
func (n *Node) handlePlayground(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		b, err := yaml.Marshal(map[string]any{"rules": currentSpecs(n.rules())})
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"rules": string(b), "source": n.book.status().Source, "regions": n.cfg.Order()})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPlaygroundBytes+1))
	if err != nil {
		writeError(w, errorf(http.StatusBadRequest, "bad_body", "reading body: %v", err))
		return
	}
	if len(body) > maxPlaygroundBytes {
		writeError(w, errorf(http.StatusRequestEntityTooLarge, "too_large", "the request is over %d bytes", maxPlaygroundBytes))
		return
	}
	var req playgroundRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, errorf(http.StatusBadRequest, "bad_json", `body must be {"rules": "<rule file>", "key": "<key>"}: %v`, err))
		return
	}
	if req.Key != "" {
		if err := validateKey(req.Key); err != nil {
			writeError(w, err)
			return
		}
	}
	opts := n.ruleOptions()
	ans := playgroundAnswer{Findings: []finding{}, Rules: []rules.Spec{}}
	diags := rules.Lint([]byte(req.Rules), "rules.yaml", opts)
	for _, d := range diags {
		ans.Findings = append(ans.Findings, finding{Severity: string(d.Severity), Line: d.Line, Column: d.Column, Rule: d.Rule, Field: d.Field, Message: d.Message, Text: d.String()})
	}
	ans.OK = !rules.HasErrors(diags)
	specs, perr := rules.ParseRules([]byte(req.Rules), "rules.yaml")
	if perr == nil {
		ans.Rules = specs
	}
	set, cerr := rules.Compile(specs, opts)
	if req.Key != "" {
		rec, _, err := n.store.Get(req.Key)
		if err != nil {
			writeError(w, err)
			return
		}
		current := n.explain(n.rules(), n.book.status(), req.Key, rec.Versions)
		ans.Current = &current
		if perr == nil && cerr == nil {
			candidate := n.explain(set, RulesStatus{Hash: rulesHash(specs), Count: len(specs), Source: "playground"}, req.Key, rec.Versions)
			ans.Candidate = &candidate
			ans.Each = n.eachRule(specs, set, candidate.Rule, req.Key, rec.Versions)
		}
	}
	writeJSON(w, http.StatusOK, ans)
}

// eachRule says, for every rule of set (compiled from specs), whether its
// match alone holds for key and how it would resolve the versions.
func (n *Node) eachRule(specs []rules.Spec, set *rules.Set, governs, key string, versions []conflict.Version) []ruleVerdict {
	var out []ruleVerdict
	for i, rule := range set.Rules() {
		v := ruleVerdict{Rule: rule.Name(), Strategy: string(rule.Strategy()), Match: "no match", Governs: rule.Name() == governs}
		// The rule alone, as a set of one: its match, without the rules
		// before it.
		if one, err := rules.Compile(specs[i:i+1], n.ruleOptions()); err == nil {
			switch m, err := one.Match(key); {
			case err != nil && m != nil:
				v.Match, v.Error = "failed", err.Error()
			case m != nil:
				v.Match = "match"
			}
		}
		res, err := rule.Resolve(key, n.cfg.Region, versions)
		v.Read = readOf(res)
		if err != nil && v.Error == "" {
			v.Error = err.Error()
		}
		out = append(out, v)
	}
	return out
}

// readOf describes what a read shows under a resolution.
func readOf(res rules.Resolution) explainRead {
	read := explainRead{Status: readStatus(res.Outcome), Outcome: res.Outcome.String(), Value: res.Value, Siblings: res.Siblings}
	if res.Kept != nil {
		read.Kept = res.Kept.Dot.String()
		for _, v := range res.Discarded {
			read.Discarded = append(read.Discarded, v.Dot.String())
		}
	}
	return read
}

// rulesHash identifies a rule list: 16 hex digits of SHA-256 over its JSON.
func rulesHash(specs []rules.Spec) string {
	raw, _ := json.Marshal(specs) //nolint:errchkjson // strings only
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}
