package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/rules"
)

// exitError is an error that exits with its own code (main).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) ExitCode() int { return e.code }

func newRulesPlan() *cobra.Command {
	var (
		f       clientFlags
		regions []string
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "plan NEW.yaml --url REGION",
		Short: "Show which keys a candidate rule set would show differently at a region, before deploying it",
		Long: "Dry run of a rule change, like `terraform plan`. The candidate file is linted first (errors stop the plan).\n" +
			"Then the region's conflict log (GET /v1/conflicts) and the keys now holding siblings\n" +
			"(GET /v1/kv?conflicted=true) are replayed against it: for each key, the region's current answer and rule\n" +
			"(GET /v1/admin/rules/explain) against what the candidate would show for the same versions, and for each\n" +
			"conflict-log entry, the version its rule kept against the one the candidate would keep. Every difference\n" +
			"is printed with before and after.\n\n" +
			"Exit status: 0 when nothing would change, 2 when something would, 1 on error.",
		Example: `  geogate rules plan configs/rules/rules.yaml --url http://127.0.0.1:7101`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			changes, err := runPlan(cmd, &f, args[0], regions, limit)
			if err != nil {
				return err
			}
			if changes > 0 {
				return &exitError{code: 2, err: fmt.Errorf("plan: %s would change", nounCount(changes, "key or conflict"))}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringSliceVar(&regions, "regions", nil, "the deployment's region names (default: the candidate file's regions:)")
	cmd.Flags().IntVar(&limit, "limit", 1000, "at most this many conflict-log entries and this many keys holding siblings")
	return cmd
}

// planExplain is the part of GET /v1/admin/rules/explain the plan reads.
type planExplain struct {
	Rule     string `json:"rule"`
	Versions []struct {
		Value   json.RawMessage `json:"value"`
		Origin  string          `json:"origin"`
		HLC     conflict.HLC    `json:"hlc"`
		Deleted bool            `json:"deleted"`
		Dot     string          `json:"dot"`
	} `json:"versions"`
	Read struct {
		Status   int               `json:"status"`
		Value    json.RawMessage   `json:"value"`
		Siblings []json.RawMessage `json:"siblings"`
	} `json:"read"`
}

// planConflict is one entry of GET /v1/conflicts.
type planConflict struct {
	Seq       uint64             `json:"seq"`
	Key       string             `json:"key"`
	Rule      string             `json:"rule"`
	Kept      *conflict.Version  `json:"kept"`
	Discarded []conflict.Version `json:"discarded"`
	At        int64              `json:"at"`
	Note      string             `json:"note"`
}

// runPlan prints the plan and returns the number of changes.
func runPlan(cmd *cobra.Command, f *clientFlags, path string, regions []string, limit int) (int, error) {
	out := cmd.OutOrStdout()
	src, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("plan: %w", err)
	}
	opts := rules.Options{Regions: regions}
	diags := rules.Lint(src, path, opts)
	if rules.HasErrors(diags) {
		for _, d := range diags {
			fmt.Fprintln(out, d.String())
		}
		return 0, fmt.Errorf("plan: %s has lint errors; fix them first (geogate rules lint %s)", path, path)
	}
	specs, err := rules.ParseRules(src, path)
	if err != nil {
		return 0, fmt.Errorf("plan: %w", err)
	}
	if len(regions) == 0 {
		if rs, err := regionsOf(src); err == nil {
			opts.Regions = rs
		}
	}
	set, err := rules.Compile(specs, opts)
	if err != nil {
		return 0, fmt.Errorf("plan: %w", err)
	}

	var status struct {
		Region string `json:"region"`
		Rules  struct {
			Hash string `json:"hash"`
		} `json:"rules"`
	}
	if err := getJSON(cmd, f, "/v1/status", &status); err != nil {
		return 0, err
	}
	var log struct {
		Conflicts []planConflict `json:"conflicts"`
	}
	if err := getJSON(cmd, f, "/v1/conflicts?limit="+strconv.Itoa(min(limit, 10000)), &log); err != nil {
		return 0, err
	}
	var conflicted []string
	for after := ""; len(conflicted) < limit; {
		var page struct {
			Keys []string `json:"keys"`
			Next string   `json:"next"`
		}
		q := url.Values{"conflicted": {"true"}, "limit": {strconv.Itoa(min(limit-len(conflicted), 10000))}, "after": {after}}
		if err := getJSON(cmd, f, "/v1/kv?"+q.Encode(), &page); err != nil {
			return 0, err
		}
		conflicted = append(conflicted, page.Keys...)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	logged := map[string]bool{}
	keys := slices.Clone(conflicted)
	for _, e := range log.Conflicts {
		keys = append(keys, e.Key)
		logged[e.Key] = true
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)

	fmt.Fprintf(out, "Plan for region %s (rules %s) with %s:\n", status.Region, status.Rules.Hash, path)
	fmt.Fprintf(out, "checking %s (%d in the conflict log, %d holding siblings) and %s\n\n",
		nounCount(len(keys), "key"), len(logged), len(conflicted), nounCount(len(log.Conflicts), "conflict-log entry"))
	changed, unchanged := 0, 0
	for _, key := range keys {
		var ex planExplain
		if err := getJSON(cmd, f, "/v1/admin/rules/explain?key="+url.QueryEscape(key), &ex); err != nil {
			return 0, err
		}
		versions, err := ex.versions()
		if err != nil {
			return 0, fmt.Errorf("plan: key %q: %w", key, err)
		}
		if len(versions) == 0 {
			continue // the record is gone (a conflict-log key since pruned)
		}
		after := set.Explain(key, status.Region, versions)
		afterRule := ""
		if after.Rule != nil {
			afterRule = after.Rule.Name()
		}
		before := showRead(ex.Read.Status, ex.Read.Value, ex.Read.Siblings)
		res := after.Resolution
		now := showRead(readStatus(res.Outcome), res.Value, res.Siblings)
		if before == now && ex.Rule == afterRule {
			unchanged++
			continue
		}
		changed++
		fmt.Fprintf(out, "  ~ %s\n", key)
		if ex.Rule != afterRule {
			fmt.Fprintf(out, "      rule: %s -> %s\n", ex.Rule, afterRule)
		}
		if before != now {
			fmt.Fprintf(out, "      read: %s\n         -> %s\n", before, now)
		}
		if after.Err != nil {
			fmt.Fprintf(out, "      failure under the candidate: %s\n", strings.ReplaceAll(after.Err.Error(), "\n", "; "))
		}
	}
	replayed := 0
	for _, e := range log.Conflicts {
		if e.Kept == nil || e.Note != "" {
			continue // merges and clock-skew notes: nothing a rule chose
		}
		versions := append([]conflict.Version{*e.Kept}, e.Discarded...)
		after := set.Explain(e.Key, status.Region, versions)
		afterRule, kept := "", "every version (siblings)"
		if after.Rule != nil {
			afterRule = after.Rule.Name()
		}
		if k := after.Resolution.Kept; k != nil {
			kept = k.Dot.String()
		}
		if kept == e.Kept.Dot.String() && afterRule == e.Rule {
			continue
		}
		replayed++
		fmt.Fprintf(out, "  ~ conflict #%d %s (%s)\n      kept: %s under %s\n         -> %s under %s\n",
			e.Seq, e.Key, time.UnixMilli(e.At).UTC().Format(time.RFC3339), e.Kept.Dot, e.Rule, kept, afterRule)
	}
	if changed+replayed == 0 {
		fmt.Fprintf(out, "No changes: the candidate shows every checked key as the region does now.\n")
		return 0, nil
	}
	fmt.Fprintf(out, "\nPlan: %s would show differently, %d unchanged; %s would be settled differently.\n",
		nounCount(changed, "key"), unchanged, nounCount(replayed, "conflict-log entry"))
	return changed + replayed, nil
}

// versions turns the explain answer's versions back into a frontier.
func (ex planExplain) versions() ([]conflict.Version, error) {
	out := make([]conflict.Version, 0, len(ex.Versions))
	for _, v := range ex.Versions {
		i := strings.LastIndexByte(v.Dot, ':')
		counter, err := strconv.ParseUint(v.Dot[i+1:], 10, 64)
		if i < 0 || err != nil {
			return nil, fmt.Errorf("dot %q is not actor:counter", v.Dot)
		}
		cv := conflict.Version{Dot: conflict.Dot{Actor: v.Dot[:i], Counter: counter}, Origin: v.Origin, HLC: v.HLC, Deleted: v.Deleted}
		if !v.Deleted {
			cv.Value = v.Value
		}
		out = append(out, cv)
	}
	return out, nil
}

// readStatus is the HTTP status a read of outcome o answers.
func readStatus(o rules.Outcome) int {
	switch o {
	case rules.OutcomeOne:
		return 200
	case rules.OutcomeSiblings:
		return 300
	}
	return 404
}

// showRead renders a read's answer compactly, with documents in canonical
// form (sorted keys) so equal answers render equally.
func showRead(status int, value json.RawMessage, siblings []json.RawMessage) string {
	canon := func(raw json.RawMessage) string {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return string(raw)
		}
		b, _ := json.Marshal(v) //nolint:errchkjson // decoded JSON
		return string(b)
	}
	switch status {
	case 200:
		return "200 " + canon(value)
	case 300:
		parts := make([]string, len(siblings))
		for i, s := range siblings {
			parts[i] = canon(s)
		}
		slices.Sort(parts)
		return "300 siblings [" + strings.Join(parts, ", ") + "]"
	}
	return "404"
}

// regionsOf reads the regions: of a rule file or region config.
func regionsOf(src []byte) ([]string, error) {
	var doc struct {
		Regions any `yaml:"regions"`
	}
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	var out []string
	switch r := doc.Regions.(type) {
	case []any:
		for _, e := range r {
			out = append(out, fmt.Sprint(e))
		}
	case map[string]any:
		for k := range r {
			out = append(out, k)
		}
		slices.Sort(out)
	}
	return out, nil
}

// getJSON GETs path from the region and decodes the 200 answer.
func getJSON(cmd *cobra.Command, f *clientFlags, path string, v any) error {
	c, err := f.client(cmd)
	if err != nil {
		return err
	}
	if err := c.GetJSON(cmd.Context(), path, v); err != nil {
		return fmt.Errorf("plan: %w", f.explain(err))
	}
	return nil
}
