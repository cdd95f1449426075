package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/client"
)

// clientFlags are the flags shared by the client verbs.
type clientFlags struct {
	url, context, session string
	token, ca, cert, key  string
	wait                  durationFlag
	verbose               bool
}

func (f *clientFlags) register(cmd *cobra.Command) {
	def := os.Getenv("GEOGATE_URL")
	if def == "" {
		def = "http://127.0.0.1:7101"
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", def, "base URL of a region's HTTP API (default from $GEOGATE_URL); several, comma-separated, are tried in order")
	fl.StringVar(&f.session, "session", "", "session token from an earlier write (read-your-writes across regions)")
	fl.StringVar(&f.token, "token", os.Getenv("GEOGATE_TOKEN"), "bearer token of a secured region, or @FILE to read it from a file such as DIR/tokens/writer.token of geogate init (default $GEOGATE_TOKEN)")
	fl.StringVar(&f.ca, "ca", os.Getenv("GEOGATE_CA"), "PEM file of the CA to trust for https URLs, e.g. DIR/tls/ca.pem of geogate init (default $GEOGATE_CA, else the system's)")
	fl.StringVar(&f.cert, "cert", "", "PEM client certificate to present (with --key)")
	fl.StringVar(&f.key, "key", "", "PEM key of --cert")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print each request's status line and the X-Geo-* headers to stderr")
}

// client builds a stateless client (the verb passes the tokens given as
// flags) with the flags' endpoints, TLS and token.
func (f *clientFlags) client(cmd *cobra.Command) (*client.Client, error) {
	var urls []string
	for _, u := range strings.Split(f.url, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	opts := []client.Option{client.WithoutTracking()}
	token, err := f.bearer()
	if err != nil {
		return nil, err
	}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	if f.ca != "" || f.cert != "" || f.key != "" {
		opts = append(opts, client.WithTLSFiles(f.ca, f.cert, f.key))
	}
	if f.wait > 0 {
		opts = append(opts, client.WithWait(time.Duration(f.wait)))
	}
	if f.verbose {
		stderr := cmd.ErrOrStderr()
		opts = append(opts, client.WithObserver(func(ex client.Exchange) {
			if ex.Err != nil {
				fmt.Fprintf(stderr, "%s %s: %v\n", ex.Method, ex.URL, ex.Err)
				return
			}
			fmt.Fprintf(stderr, "%s %s: %d %s\n", ex.Method, ex.URL, ex.Status, http.StatusText(ex.Status))
			for _, h := range []string{client.HeaderContext, client.HeaderSession, client.HeaderRule, "Location"} {
				if v := ex.Header.Get(h); v != "" {
					fmt.Fprintf(stderr, "%s: %s\n", h, v)
				}
			}
		}))
	}
	c, err := client.New(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("--url %q: %w", f.url, err)
	}
	return c, nil
}

// withClient runs do with the client the flags describe and closes the
// client after it.
func (f *clientFlags) withClient(cmd *cobra.Command, do func(*client.Client) error) error {
	c, err := f.client(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	return do(c)
}

// calls returns the per-call options the flags give.
func (f *clientFlags) calls(withContext bool) []client.CallOption {
	var o []client.CallOption
	if f.session != "" {
		o = append(o, client.Session(f.session))
	}
	if withContext && f.context != "" {
		o = append(o, client.CausalContext(f.context))
	}
	return o
}

// explain adds what to check to an error that is not the server's answer.
func (f *clientFlags) explain(err error) error {
	var ae *client.APIError
	if err == nil || errors.As(err, &ae) {
		return err
	}
	return fmt.Errorf("%w (is a region running at %s?)", err, f.url)
}

func newPut() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "put KEY VALUE|-",
		Short: "Write a JSON document to a key (VALUE '-' reads standard input)",
		Example: `  geogate put user/1 '{"name":"Ada"}' --url http://127.0.0.1:7101
  geogate put cart/9 '["milk"]' --context "$CTX"`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			value := []byte(args[1])
			if args[1] == "-" {
				var err error
				if value, err = io.ReadAll(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			if !json.Valid(value) {
				return errors.New("VALUE is not valid JSON: quote strings, e.g. '\"text\"' or '{\"a\":1}'")
			}
			return f.withClient(cmd, func(c *client.Client) error {
				res, err := c.Put(cmd.Context(), args[0], json.RawMessage(value), f.calls(true)...)
				if err != nil {
					return f.explain(err)
				}
				return printJSON(cmd.OutOrStdout(), res)
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.context, "context", "", "causal context token from an earlier read or write of this key")
	return cmd
}

func newGet() *cobra.Command {
	var f clientFlags
	var meta bool
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Read a key: the document, or {\"siblings\": [...]} when concurrent values are unresolved",
		Example: `  geogate get user/1
  geogate get user/1 --meta -o table
  geogate get user/1 --session "$SESSION" --wait 5s --url http://127.0.0.1:7102`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withClient(cmd, func(c *client.Client) error {
				w := cmd.OutOrStdout()
				if meta {
					m, err := c.Meta(cmd.Context(), args[0], f.calls(false)...)
					if err != nil {
						return f.explain(err)
					}
					return out.print(w, m, func(tw io.Writer) {
						fmt.Fprintln(tw, "DOT\tORIGIN\tHLC\tDELETED\tVALUE")
						for _, v := range m.Versions {
							fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", v.Dot, v.Origin, v.HLC, v.Deleted, orNull(v.Value))
						}
					})
				}
				v, err := c.Get(cmd.Context(), args[0], f.calls(false)...)
				if err != nil {
					return f.explain(err)
				}
				values := []json.RawMessage{v.Data}
				var doc any = v.Data
				if v.HasSiblings() {
					values, doc = v.Siblings, map[string]any{"siblings": v.Siblings}
				}
				return out.print(w, doc, func(tw io.Writer) {
					fmt.Fprintln(tw, "KEY\tRULE\tVALUE")
					for _, d := range values {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Key, v.Rule, d)
					}
				})
			})
		},
	}
	f.register(cmd)
	out.register(cmd, outputJSON)
	cmd.Flags().BoolVar(&meta, "meta", false, "show every version of the frontier with origin, HLC and tombstones")
	cmd.Flags().Var(&f.wait, "wait", "with --session: how long to wait for this region to catch up, e.g. 2s (a plain number counts milliseconds)")
	return cmd
}

// orNull is a version's value as JSON, null for a tombstone.
func orNull(v json.RawMessage) string {
	if len(v) == 0 {
		return "null"
	}
	return string(v)
}

func newDel() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "del KEY",
		Short: "Delete a key (writes a tombstone that replicates)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withClient(cmd, func(c *client.Client) error {
				res, err := c.Delete(cmd.Context(), args[0], f.calls(true)...)
				if err != nil {
					return f.explain(err)
				}
				return printJSON(cmd.OutOrStdout(), res)
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.context, "context", "", "causal context token from an earlier read or write of this key")
	return cmd
}

func newStatus() *cobra.Command {
	var f clientFlags
	var out outputFlag
	var raw bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a region's sequence, applied watermarks and links with their lag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withClient(cmd, func(c *client.Client) error {
				st, err := c.Status(cmd.Context())
				if err != nil {
					return f.explain(err)
				}
				if raw {
					out = outputJSON
				}
				return out.print(cmd.OutOrStdout(), st, func(tw io.Writer) { printStatus(tw, st) })
			})
		},
	}
	f.register(cmd)
	out.register(cmd, outputTable)
	cmd.Flags().BoolVar(&raw, "json", false, "the same as --output json (kept for scripts written for it)")
	return cmd
}

func printStatus(w io.Writer, s client.Status) {
	fmt.Fprintf(w, "region\t%s (actor %s)\n", s.Region, s.Actor)
	fmt.Fprintf(w, "topology\t%s\n", s.Topology)
	fmt.Fprintf(w, "seq\t%d (outbox pending %d)\n", s.Seq, s.Outbox)
	if s.Rules.Hash != "" {
		fmt.Fprintf(w, "rules\t%s (%d rules from %s, loaded %s)\n", s.Rules.Hash, s.Rules.Count, s.Rules.Source, s.Rules.LoadedAt.Format(time.RFC3339))
	}
	fmt.Fprintln(w, "\nAPPLIED FROM\tSEQ")
	for _, a := range slices.Sorted(maps.Keys(s.Applied)) {
		fmt.Fprintf(w, "%s\t%d\n", a, s.Applied[a])
	}
	printLinks(w, s.Links)
}

// printLinks writes links as a table, after a blank line.
func printLinks(w io.Writer, links []client.LinkStatus) {
	fmt.Fprintln(w, "\nLINK\tSTATE\tPENDING\tLAG")
	for _, l := range links {
		state := l.State
		if l.Reason != "" {
			state += ": " + l.Reason
		}
		fmt.Fprintf(w, "%s -> %s\t%s\t%d\t%.3fs\n", l.From, l.To, state, l.Pending, l.LagSeconds)
	}
}

// bearer returns the token to send: --token, or the first line of the
// file it names with @FILE.
func (f *clientFlags) bearer() (string, error) {
	name, ok := strings.CutPrefix(f.token, "@")
	if !ok {
		return strings.TrimSpace(f.token), nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("--token: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}
