package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/store"
)

func newBackup() *cobra.Command {
	var f clientFlags
	var out string
	cmd := &cobra.Command{
		Use:   "backup --url URL --out FILE",
		Short: "Write a consistent snapshot of one region, with its log positions, to FILE (admin)",
		Long: "Fetch a snapshot of the region at --url (GET /v1/admin/snapshot, which needs an admin token on a\n" +
			"secured region): every record at one instant and, per origin, the log position it reflects. The\n" +
			"snapshot is verified (checksums, record count) before FILE is replaced; a cut or damaged download\n" +
			"leaves FILE as it was. Restore it with geogate restore.",
		Example: `  geogate backup --url http://127.0.0.1:7101 --out us-east.geosnap
  geogate backup --url https://us-east.example.com:7101 --token @deploy/tokens/admin.token --ca deploy/tls/ca.pem --out us-east.geosnap`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out FILE is required: where to write the snapshot")
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".part-*")
			if err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
			start := time.Now()
			if _, err := c.Snapshot(cmd.Context(), tmp); err != nil {
				tmp.Close()
				return f.explain(err)
			}
			if err := tmp.Sync(); err != nil {
				tmp.Close()
				return err
			}
			if _, err := tmp.Seek(0, 0); err != nil {
				tmp.Close()
				return err
			}
			info, err := store.VerifySnapshot(tmp)
			tmp.Close()
			if err != nil {
				return fmt.Errorf("the snapshot from %s does not verify, %s left as it was: %w", f.url, out, err)
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return err
			}
			h := info.Header
			fmt.Fprintf(cmd.OutOrStdout(), "backup of %s (actor %s, taken %s): %d records, %d bytes, positions %s -> %s (%s)\n",
				h.Region, h.Actor, time.UnixMilli(h.TakenAt).UTC().Format(time.RFC3339), info.Records, info.Bytes, h.Positions, out,
				time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "file to write the snapshot to (replaced only once the new one verifies)")
	return cmd
}

func newRestore() *cobra.Command {
	var force, otherRegion bool
	cmd := &cobra.Command{
		Use:   "restore FILE --config CFG",
		Short: "Fill the config's empty data directory from a snapshot FILE (geogate backup)",
		Long: "Create the region's store in the config's data_dir, which must be empty (or missing), from a snapshot\n" +
			"written by geogate backup. The file is verified whole first (a truncated or damaged file is refused\n" +
			"before anything is written). The restored region writes under a new actor epoch, so it never reuses a\n" +
			"version id of the region the snapshot was taken of, and its links resume from the snapshot's log\n" +
			"positions: events after them come from the peers' streams or, when those no longer hold them, from a\n" +
			"peer's snapshot (re-seeding, automatic). Start the region with geogate serve afterwards.\n\n" +
			"A snapshot older than tombstones.grace is refused without --force: tombstones of keys deleted since may\n" +
			"have been collected by the other regions, and the restored region could bring those values back.",
		Example: `  geogate restore us-east.geosnap --config configs/us-east.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, _ := cmd.Flags().GetString("config")
			if path == "" {
				return errors.New("--config CFG is required: the config of the region to restore")
			}
			cfg, err := config.Load(path, os.Environ(), cmd.Flags())
			if err != nil {
				return err
			}
			file := args[0]
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			info, err := store.VerifySnapshot(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w; nothing was written", file, err)
			}
			h := info.Header
			if h.Region != cfg.Region && !otherRegion {
				return fmt.Errorf("%s is a snapshot of region %s, and %s configures region %s: pass --other-region to seed %s from it", file, h.Region, path, cfg.Region, cfg.Region)
			}
			age := time.Since(time.UnixMilli(h.TakenAt))
			if age > cfg.Tombstones.Grace && !force {
				return fmt.Errorf("%s was taken %s ago, more than tombstones.grace (%s): keys deleted since may have had their tombstones collected, and restoring could bring their values back; pass --force to restore anyway", file, age.Round(time.Second), cfg.Tombstones.Grace)
			}
			if empty, err := store.DirEmpty(cfg.DataDir); err != nil || !empty {
				if err == nil {
					err = store.ErrNotEmpty
				}
				return fmt.Errorf("data_dir %s: %w: restore fills an empty data directory; move the old one away first", cfg.DataDir, err)
			}
			clock := conflict.NewClock(conflict.WallClock, cfg.Replication.MaxClockSkew.Milliseconds())
			ctx, stop := signalContext(cmd)
			defer stop()
			res, err := store.Restore(ctx, store.Options{
				Dir: filepath.Join(cfg.DataDir, "store"), Region: cfg.Region, Sync: cfg.Durability.Sync, Clock: clock,
				Logger: cfg.Log.NewLogger(os.Stderr),
			}, file)
			if err != nil {
				_ = os.Remove(cfg.DataDir) // only if restore left it empty
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s into %s: %d records of %s (actor %s), new actor %s, positions %s\n",
				file, cfg.DataDir, res.Snapshot.Records, h.Region, h.Actor, res.Actor, h.Positions)
			return nil
		},
	}
	config.RegisterFlags(cmd.Flags())
	cmd.Flags().BoolVar(&force, "force", false, "restore a snapshot older than tombstones.grace")
	cmd.Flags().BoolVar(&otherRegion, "other-region", false, "restore a snapshot of another region (to seed a new region from it)")
	return cmd
}

func newReseed() *cobra.Command {
	var f clientFlags
	var from string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "reseed --from PEER --url URL",
		Short: "Re-seed a region's link from a snapshot of PEER, and wait for the result (admin)",
		Long: "Ask the region at --url to fetch a snapshot of PEER and merge it (POST /v1/admin/links/PEER/reseed),\n" +
			"then wait until it is merged and print the result. A region does this by itself when PEER's stream no\n" +
			"longer holds events it needs; this forces it. Merging never loses what the region holds.",
		Example: `  geogate reseed --from us-east --url http://127.0.0.1:7102`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return errors.New("--from PEER is required: the region whose snapshot to merge")
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			started := time.Now().Add(-time.Second)
			if _, err := c.ReseedLink(ctx, from); err != nil {
				return f.explain(err)
			}
			for {
				st, err := c.Status(ctx)
				if err != nil {
					return f.explain(err)
				}
				r := st.Lifecycle.Reseeds[from]
				if last := r.Last; last != nil && last.At.After(started) && r.State != client.LinkReseeding {
					if last.Error != "" {
						return fmt.Errorf("re-seed of %s from %s failed: %s", st.Region, from, last.Error)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "re-seeded %s from %s: %d records (%d changed), %d bytes in %.2fs\n",
						st.Region, from, last.Records, last.Changed, last.Bytes, last.Seconds)
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("no re-seed result from %s within %s (see geogate status)", f.url, timeout)
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&from, "from", "", "the peer region to re-seed from")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the result")
	return cmd
}
