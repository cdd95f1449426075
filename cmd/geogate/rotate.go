package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/gateway/pki"
)

func newCert() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Manage the certificates of a deployment written by geogate init",
	}
	var (
		hosts []string
		days  int
	)
	renew := &cobra.Command{
		Use:   "renew DIR NODE [--hosts H,...] [--days N]",
		Short: "Issue NODE a new certificate and key from the deployment's CA (DIR/tls/ca.pem and ca-key.pem)",
		Long: "Issue NODE a new certificate and key signed by the deployment's CA and write them over\n" +
			"DIR/tls/<node>.pem and DIR/tls/<node>-key.pem (each through a rename). A running node serves the new\n" +
			"pair from its next TLS handshake, within a second; no restart. The hosts default to the ones of the\n" +
			"current certificate.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, node := args[0], args[1]
			ca, err := pki.LoadCA(filepath.Join(dir, deploy.CAFile), filepath.Join(dir, deploy.CAKeyFile))
			if err != nil {
				return fmt.Errorf("cert renew: %w", err)
			}
			certFile, keyFile := filepath.Join(dir, deploy.CertFile(node)), filepath.Join(dir, deploy.KeyFile(node))
			hosts = splitList(hosts)
			if len(hosts) == 0 {
				if hosts, err = certHosts(certFile); err != nil {
					return fmt.Errorf("cert renew: %w (or name the hosts with --hosts)", err)
				}
			}
			if days < 1 {
				return fmt.Errorf("--days %d: must be at least 1", days)
			}
			now := time.Now()
			leaf, err := ca.Issue(pki.IssueOptions{CommonName: node, Hosts: hosts, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Duration(days) * 24 * time.Hour)})
			if err != nil {
				return fmt.Errorf("cert renew: %w", err)
			}
			if err := leaf.WriteFiles(certFile, keyFile); err != nil {
				return fmt.Errorf("cert renew: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "renewed %s: %s, valid until %s for %v\n", node, certFile, now.Add(time.Duration(days)*24*time.Hour).UTC().Format(time.RFC3339), hosts)
			return nil
		},
	}
	renew.Flags().StringSliceVar(&hosts, "hosts", nil, "hosts the certificate is valid for (default: those of the current certificate)")
	renew.Flags().IntVar(&days, "days", 825, "validity in days")
	cmd.AddCommand(renew)
	return cmd
}

// certHosts returns the DNS names and IP addresses of the certificate in
// file.
func certHosts(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	hosts := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return hosts, nil
}

func newToken() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Add or revoke bearer tokens in a tokens file (auth.tokens_file)",
	}
	var (
		name, role string
		prefixes   []string
	)
	add := &cobra.Command{
		Use:   "add FILE --name NAME --role reader|writer|admin [--prefix P,...]",
		Short: "Add a token with a fresh secret to the tokens file and print the secret (shown once, stored hashed)",
		Long: "Add a token to the tokens file: a fresh 256-bit secret, stored as its SHA-256. The secret is printed on\n" +
			"standard output and nowhere else. Running nodes accept it within seconds; copy the file to every node.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			if name == "" {
				return errors.New("--name is required")
			}
			tokens, err := readTokens(args[0])
			if err != nil {
				return err
			}
			if slices.ContainsFunc(tokens, func(t auth.Token) bool { return t.Name == name }) {
				return fmt.Errorf("a token named %q is already in %s: revoke it first, or choose another name", name, args[0])
			}
			tok, secret, err := auth.NewToken(name, r, splitList(prefixes)...)
			if err != nil {
				return err
			}
			if err := pki.WriteFileAtomic(args[0], auth.FormatTokens(append(tokens, tok)), fileMode(args[0])); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), secret)
			return nil
		},
	}
	add.Flags().StringVar(&name, "name", "", "the token's name, shown in logs")
	add.Flags().StringVar(&role, "role", "", "reader, writer or admin")
	add.Flags().StringSliceVar(&prefixes, "prefix", nil, "key prefixes the token may touch (default: every key)")
	revoke := &cobra.Command{
		Use:   "revoke FILE NAME",
		Short: "Remove a token from the tokens file; running nodes refuse it within seconds",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tokens, err := readTokens(args[0])
			if err != nil {
				return err
			}
			kept := slices.DeleteFunc(slices.Clone(tokens), func(t auth.Token) bool { return t.Name == args[1] })
			if len(kept) == len(tokens) {
				return fmt.Errorf("no token named %q in %s", args[1], args[0])
			}
			if len(kept) == 0 {
				return fmt.Errorf("%q is the last token of %s: add another first (a file without tokens is refused)", args[1], args[0])
			}
			if err := pki.WriteFileAtomic(args[0], auth.FormatTokens(kept), fileMode(args[0])); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[1])
			return nil
		},
	}
	cmd.AddCommand(add, revoke)
	return cmd
}

func readTokens(file string) ([]auth.Token, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return auth.ParseTokens(b)
}

// fileMode is the permission bits of an existing file (0644 if unknown).
func fileMode(file string) os.FileMode {
	if fi, err := os.Stat(file); err == nil {
		return fi.Mode().Perm()
	}
	return 0o644
}
