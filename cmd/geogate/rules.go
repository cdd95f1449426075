package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/rules"
)

// newRules returns the `geogate rules` parent command with its lint and
// test subcommands. Both work offline on files: no region is contacted.
func newRules() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Check conflict rule files, run their test cases, and plan a rule change against a region",
		Long: "Conflict rules (README section Rules) are an ordered list in a region config or a rule\n" +
			"file. `rules lint` checks a file the way a region would load it, and more; `rules test` runs the\n" +
			"operator-written cases of a rule test file; neither contacts a region. `rules plan` shows what a candidate set\n" +
			"would change at a running region before you deploy it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		// As under the root command: a failed check is not a usage error,
		// and main prints the error.
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.AddCommand(newRulesLint(), newRulesTest(), newRulesPlan())
	return cmd
}

func newRulesLint() *cobra.Command {
	var (
		regions []string
		strict  bool
	)
	cmd := &cobra.Command{
		Use:   "lint FILE",
		Short: "Compile every rule of a rule file or region config and report problems with line, column and caret",
		Long: "Check a rule file (a rules: list) or a whole region config, whose other keys are ignored. Every finding\n" +
			"is printed as file:line:col: severity: message, then the source line with a caret under the position:\n" +
			"YAML errors, unknown or repeated keys, expressions that do not compile or type-check, fields that do not\n" +
			"apply to the strategy, home literals that are not regions, rules that can never match, a list without a\n" +
			"catch-all rule (warning), and select/merge/on_read expressions whose result depends on the order of the\n" +
			"siblings (evaluated on generated sibling sets in every order).\n\n" +
			"Region names come from --regions, else from the file's regions: (a list, or a region config's map); without\n" +
			"either, any non-empty home region is accepted. Exits non-zero when there are errors; warnings fail only\n" +
			"with --strict.",
		Example: `  geogate rules lint configs/rules/rules.yaml
  geogate rules lint configs/us-east.yaml --strict
  geogate rules lint rules.yaml --regions us-east,eu-west,ap-south`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			src, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("lint: %w", err)
			}
			diags := rules.Lint(src, path, rules.Options{Regions: regions})
			out := cmd.OutOrStdout()
			errs, warns := 0, 0
			for _, d := range diags {
				fmt.Fprintln(out, d.String())
				if d.Severity == rules.SeverityError {
					errs++
				} else {
					warns++
				}
			}
			switch {
			case errs > 0:
				return fmt.Errorf("%s in %s", nounCount(errs, "error"), path)
			case strict && warns > 0:
				return fmt.Errorf("%s in %s (--strict)", nounCount(warns, "warning"), path)
			}
			// No errors, so the file parses strictly.
			specs, err := rules.ParseRules(src, path)
			if err != nil {
				return fmt.Errorf("lint: %w", err)
			}
			summary := fmt.Sprintf("%s: ok (%s", path, nounCount(len(specs), "rule"))
			if warns > 0 {
				summary += ", " + nounCount(warns, "warning")
			}
			fmt.Fprintln(out, summary+")")
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&regions, "regions", nil, "the deployment's region names, comma-separated (replaces the file's regions:)")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings too")
	return cmd
}

func newRulesTest() *cobra.Command {
	var (
		regions  []string
		resolver string
	)
	cmd := &cobra.Command{
		Use:   "test FILE",
		Short: "Run the test cases of a rule test file and show a diff for each failure",
		Long: "Run operator-written cases against a rule set, in the spirit of `promtool test rules`. The test file names\n" +
			"its rules (rule_files: relative to the test file, or inline rules:) and lists cases: a key, the\n" +
			"frontier's versions, and what to expect (rule, status, value, siblings, kept, discarded, merged, home,\n" +
			"resolver, error); see README section Rules. Each case prints PASS or FAIL; a failure shows the expected\n" +
			"(-) and actual (+) lines. Exits non-zero when a case fails or the file cannot run.\n\n" +
			"Region names come from --regions, else the test file's regions:, else the first rule file's regions:.",
		Example: `  geogate rules test configs/rules/rules_test.yaml
  geogate rules test rules_test.yaml --regions us-east,eu-west --default-resolver eu-west`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			src, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("test: %w", err)
			}
			report, err := rules.RunTests(src, path, rules.Options{Regions: regions, DefaultResolver: resolver})
			if err != nil {
				return fmt.Errorf("test: %w", err)
			}
			out := cmd.OutOrStdout()
			for _, c := range report.Cases {
				if c.Passed {
					fmt.Fprintf(out, "PASS %s\n", c.Name)
					continue
				}
				fmt.Fprintf(out, "FAIL %s\n", c.Name)
				for _, f := range c.Failures {
					fmt.Fprintf(out, "    %s\n", strings.ReplaceAll(f, "\n", "\n    "))
				}
			}
			failed := report.Failed()
			fmt.Fprintf(out, "%s: %d passed, %d failed\n", path, len(report.Cases)-failed, failed)
			if failed > 0 {
				return fmt.Errorf("%d of %s failed in %s", failed, nounCount(len(report.Cases), "case"), path)
			}
			if len(report.Cases) == 0 {
				return fmt.Errorf("%s has no test cases (tests: is empty)", path)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&regions, "regions", nil, "the deployment's region names, comma-separated (replaces the files' regions:)")
	cmd.Flags().StringVar(&resolver, "default-resolver", "", "region that runs merge for rules without home or resolver (default: the first region)")
	return cmd
}

// nounCount renders "1 error", "3 errors".
func nounCount(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
