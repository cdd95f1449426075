package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// Output formats of the read verbs (--output).
const (
	outputJSON  = "json"
	outputTable = "table"
)

// outputFlag is the --output (-o) flag of a read verb: json (one JSON
// document on one line, for scripts) or table (aligned columns, for
// people). A pflag.Value, so that a bad format is refused when the flags
// are parsed, before any request.
type outputFlag string

func (o *outputFlag) String() string { return string(*o) }
func (o *outputFlag) Type() string   { return "json|table" }
func (o *outputFlag) Set(s string) error {
	if s != outputJSON && s != outputTable {
		return fmt.Errorf("want %s or %s", outputJSON, outputTable)
	}
	*o = outputFlag(s)
	return nil
}

// register defines --output on cmd with the verb's default format.
func (o *outputFlag) register(cmd *cobra.Command, def string) {
	*o = outputFlag(def)
	cmd.Flags().VarP(o, "output", "o", "output format: json (one line, for scripts) or table (for people)")
}

// print writes v as JSON, or as the table table writes to tw (columns
// separated by tabs, each row ending in a newline).
func (o *outputFlag) print(w io.Writer, v any, table func(tw io.Writer)) error {
	if *o == outputJSON {
		return printJSON(w, v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// durationFlag is a duration flag written as Go writes durations (2s,
// 1500ms, 1m) or as a plain number of milliseconds (for scripts written for
// the integer form).
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }
func (d *durationFlag) Type() string   { return "duration" }
func (d *durationFlag) Set(s string) error {
	if ms, err := strconv.ParseUint(s, 10, 32); err == nil {
		*d = durationFlag(time.Duration(ms) * time.Millisecond)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("want a duration such as 2s or 500ms (a plain number counts milliseconds)")
	}
	*d = durationFlag(v)
	return nil
}
