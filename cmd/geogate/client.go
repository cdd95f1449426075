package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/gateway/pki"
)

// clientFlags are the flags shared by the client verbs.
type clientFlags struct {
	url, context, session string
	token, caFile         string
	wait                  int
	verbose               bool
}

func (f *clientFlags) register(cmd *cobra.Command) {
	def := os.Getenv("GEOGATE_URL")
	if def == "" {
		def = "http://127.0.0.1:7101"
	}
	cmd.Flags().StringVar(&f.url, "url", def, "base URL of a region's HTTP API (default from $GEOGATE_URL)")
	cmd.Flags().StringVar(&f.session, "session", "", "session token from an earlier write (read-your-writes across regions)")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "print the status line and the X-Geo-* headers to stderr")
	cmd.Flags().StringVar(&f.token, "token", os.Getenv("GEOGATE_TOKEN"), "bearer token of a secured region, or @FILE to read it from a file (default $GEOGATE_TOKEN)")
	cmd.Flags().StringVar(&f.caFile, "ca", os.Getenv("GEOGATE_CA"), "PEM CA to trust for https URLs, e.g. DIR/tls/ca.pem of geogate init (default $GEOGATE_CA, else the system's)")
}

// httpClient returns the client of the verbs: it trusts --ca when set.
func (f *clientFlags) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if f.caFile != "" {
		pool, err := pki.LoadPool(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		tr.TLSClientConfig = pki.ClientConfig(pool, nil)
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: tr}, nil
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

func (f *clientFlags) do(cmd *cobra.Command, method, path string, body []byte) ([]byte, int, error) {
	base, err := url.Parse(f.url)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, 0, fmt.Errorf("--url %q is not a URL like http://127.0.0.1:7101", f.url)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, strings.TrimRight(f.url, "/")+path, rd)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if f.context != "" {
		req.Header.Set("X-Geo-Context", f.context)
	}
	if f.session != "" {
		req.Header.Set("X-Geo-Session", f.session)
	}
	if f.wait > 0 {
		req.Header.Set("X-Geo-Wait", fmt.Sprint(f.wait))
	}
	token, err := f.bearer()
	if err != nil {
		return nil, 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client, err := f.httpClient()
	if err != nil {
		return nil, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w (is a region running at %s?)", method, path, err, f.url)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if f.verbose {
		fmt.Fprintln(cmd.ErrOrStderr(), resp.Status)
		for _, h := range []string{"X-Geo-Context", "X-Geo-Session", "X-Geo-Rule", "Location"} {
			if v := resp.Header.Get(h); v != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", h, v)
			}
		}
	}
	if resp.StatusCode >= 400 {
		var e struct{ Error, Code string }
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			return out, resp.StatusCode, fmt.Errorf("%s (%d %s)", e.Error, resp.StatusCode, e.Code)
		}
		return out, resp.StatusCode, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return out, resp.StatusCode, nil
}

// print sends the request and prints the answer's body on success.
func (f *clientFlags) print(cmd *cobra.Command, method, path string, body []byte) error {
	out, _, err := f.do(cmd, method, path, body)
	if err != nil {
		return err
	}
	_, err = cmd.OutOrStdout().Write(out)
	return err
}

func kvPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

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
			return f.print(cmd, http.MethodPut, kvPath(args[0]), value)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.context, "context", "", "causal context token from an earlier read or write of this key")
	return cmd
}

func newGet() *cobra.Command {
	var f clientFlags
	var meta bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Read a key: the document, or {\"siblings\": [...]} when concurrent values are unresolved",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := kvPath(args[0])
			if meta {
				path += "?meta=true"
			}
			return f.print(cmd, http.MethodGet, path, nil)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&meta, "meta", false, "show every version of the frontier with origin, HLC and tombstones")
	cmd.Flags().IntVar(&f.wait, "wait", 0, "with --session: milliseconds to wait for this region to catch up")
	return cmd
}

func newDel() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "del KEY",
		Short: "Delete a key (writes a tombstone that replicates)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.print(cmd, http.MethodDelete, kvPath(args[0]), nil)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.context, "context", "", "causal context token from an earlier read or write of this key")
	return cmd
}

func newStatus() *cobra.Command {
	var f clientFlags
	var raw bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a region's sequence, applied watermarks and links with their lag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, _, err := f.do(cmd, http.MethodGet, "/v1/status", nil)
			if err != nil {
				return err
			}
			if raw {
				cmd.OutOrStdout().Write(out) //nolint:errcheck
				return nil
			}
			return printStatus(cmd.OutOrStdout(), out)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&raw, "json", false, "print the raw JSON")
	return cmd
}

func printStatus(w io.Writer, body []byte) error {
	var s struct {
		Region, Actor, Topology string
		Seq                     uint64
		Applied                 map[string]uint64
		Outbox                  uint64 `json:"outbox_pending"`
		Links                   []struct {
			From, To, State string
			Pending         uint64
			Lag             float64 `json:"lag_seconds"`
		}
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	fmt.Fprintf(w, "region   %s (actor %s)\ntopology %s\nseq      %d   outbox pending %d\n", s.Region, s.Actor, s.Topology, s.Seq, s.Outbox)
	fmt.Fprintln(w, "applied:")
	for _, a := range slices.Sorted(maps.Keys(s.Applied)) {
		fmt.Fprintf(w, "  %-28s %d\n", a, s.Applied[a])
	}
	fmt.Fprintln(w, "links:")
	for _, l := range s.Links {
		fmt.Fprintf(w, "  %s -> %s  %-6s pending %-8d lag %.3fs\n", l.From, l.To, l.State, l.Pending, l.Lag)
	}
	return nil
}
