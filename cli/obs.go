package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/malocal/malocal/emulator"
	"github.com/malocal/malocal/fakeobs/obsclient"
)

// obsFlags are shared by the `malocal obs` subcommands.
type obsFlags struct {
	parallel   int
	noProgress bool
}

func newObsCmd(g *globals) *cobra.Command {
	f := &obsFlags{}
	cmd := &cobra.Command{
		Use:   "obs",
		Short: "Use the emulator's object store without an S3 client: ls, mb, rb, cp, sync, rm, cat",
		Long: `Work with the running emulator's object store (the OBS stand-in).
URLs are s3://bucket/key or obs://bucket/key; anything else is a local path.
It uses the object store and keys of the emulator running on --data-dir
(--api does not switch it: for an emulator on another data dir, pass that
--data-dir, or use any S3 client with that emulator's ` + "`malocal env`" + `).
  malocal obs mb s3://work
  malocal obs cp -r ./mnist obs://work/code/
  malocal obs sync obs://work/output ./output
  malocal obs ls -r s3://work/code/`,
	}
	pf := cmd.PersistentFlags()
	pf.IntVar(&f.parallel, "parallel", 8, "files (and parts of a large file) transferred at once")
	pf.BoolVar(&f.noProgress, "no-progress", false, "do not show progress of long transfers")
	cmd.AddCommand(
		newObsLsCmd(g, f),
		newObsMbCmd(g, f),
		newObsRbCmd(g, f),
		newObsCpCmd(g, f),
		newObsSyncCmd(g, f),
		newObsRmCmd(g, f),
		newObsCatCmd(g, f),
	)
	plainOBSErrors(cmd)
	return cmd
}

// obsClient connects to the object store of the emulator running on the
// data dir, with the keys it keeps there.
func (g *globals) obsClient(cmd *cobra.Command, f *obsFlags) (*obsclient.Client, error) {
	// Commands without the flag (samples) pass 0: the client's default.
	if f.parallel != 0 || cmd.Flags().Lookup("parallel") != nil {
		if err := checkParallel(f.parallel); err != nil {
			return nil, err
		}
	}
	dd, err := g.openDataDir()
	if err != nil {
		return nil, err
	}
	creds, err := dd.Credentials()
	if err != nil {
		return nil, err
	}
	rt, err := dd.Running()
	if err != nil {
		if errors.Is(err, emulator.ErrNotRunning) {
			return nil, &exitError{code: 2, err: fmt.Errorf("%w: start it with `malocal up`", err)}
		}
		return nil, err
	}
	if err := checkOBSAPI(cmd, rt.API); err != nil {
		return nil, err
	}
	cfg := obsclient.Config{
		Endpoint: "http://" + rt.S3, AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, Region: creds.Region,
		Parallel: f.parallel,
	}
	if w := cmd.ErrOrStderr(); !f.noProgress && isTerminal(w) {
		cfg.Progress = w
	}
	return obsclient.New(cfg)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func remoteArg(s string) (obsclient.URL, error) {
	u, remote, err := obsclient.ParseURL(s)
	if err != nil {
		return u, err
	}
	if !remote {
		return u, fmt.Errorf("%q is not an s3:// or obs:// URL", s)
	}
	return u, nil
}

func newObsLsCmd(g *globals, f *obsFlags) *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "ls [s3://bucket[/prefix]]",
		Short: "List buckets, or the objects and folders under a prefix",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.obsClient(cmd, f)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				bs, err := c.ListBuckets(cmd.Context())
				if err != nil {
					return err
				}
				var rows [][]string
				for _, b := range bs {
					rows = append(rows, []string{b.Created.Local().Format(time.DateTime), b.Name})
				}
				return g.printData(cmd.OutOrStdout(), bs, []string{"CREATED", "BUCKET"}, rows)
			}
			u, err := remoteArg(args[0])
			if err != nil {
				return err
			}
			entries := []obsclient.Entry{}
			var rows [][]string
			err = c.List(cmd.Context(), u, recursive, func(e obsclient.Entry) error {
				// A "folder/" marker object (OBS console, mox.file.make_dirs)
				// is a folder; the one of the folder listed is not shown.
				if strings.HasSuffix(e.Key, "/") && !e.Folder {
					if e.Key == u.Key && !recursive {
						return nil
					}
					e.Folder = true
				}
				entries = append(entries, e)
				if e.Folder {
					rows = append(rows, []string{"", "DIR", "s3://" + u.Bucket + "/" + e.Key})
				} else {
					rows = append(rows, []string{e.Modified.Local().Format(time.DateTime), fmt.Sprint(e.Size), "s3://" + u.Bucket + "/" + e.Key})
				}
				return nil
			})
			if err != nil {
				return err
			}
			return g.printData(cmd.OutOrStdout(), entries, []string{"MODIFIED", "SIZE", "URL"}, rows)
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "list every object under the prefix, not just one level")
	return cmd
}

func newObsMbCmd(g *globals, f *obsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "mb s3://bucket",
		Short: "Make a bucket",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := remoteArg(args[0])
			if err != nil {
				return err
			}
			c, err := g.obsClient(cmd, f)
			if err != nil {
				return err
			}
			if err := c.MakeBucket(cmd.Context(), u.Bucket); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "make_bucket: %s\n", u.Bucket)
			return nil
		},
	}
}

func newObsRbCmd(g *globals, f *obsFlags) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rb s3://bucket",
		Short: "Remove a bucket (with --force, its objects first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := remoteArg(args[0])
			if err != nil {
				return err
			}
			c, err := g.obsClient(cmd, f)
			if err != nil {
				return err
			}
			if err := c.RemoveBucket(cmd.Context(), u.Bucket, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "remove_bucket: %s\n", u.Bucket)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete the bucket's objects first")
	return cmd
}

func printStats(g *globals, cmd *cobra.Command, verb string, st obsclient.Stats) error {
	if g.output == "json" {
		return g.printData(cmd.OutOrStdout(), st, nil, nil)
	}
	msg := fmt.Sprintf("%s %d file(s), %d bytes", verb, st.Files, st.Bytes)
	if st.Skipped > 0 {
		msg += fmt.Sprintf(", %d unchanged", st.Skipped)
	}
	if st.Deleted > 0 {
		msg += fmt.Sprintf(", %d deleted", st.Deleted)
	}
	fmt.Fprintln(cmd.OutOrStdout(), msg)
	return nil
}

func newObsCpCmd(g *globals, f *obsFlags) *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files and folders to, from or within the object store",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.obsClient(cmd, f)
			if err != nil {
				return err
			}
			st, err := c.Copy(cmd.Context(), args[0], args[1], recursive)
			if err != nil {
				return err
			}
			return printStats(g, cmd, "copied", st)
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "copy a folder or every object under a prefix")
	return cmd
}

func newObsSyncCmd(g *globals, f *obsFlags) *cobra.Command {
	var del bool
	cmd := &cobra.Command{
		Use:   "sync SRC DST",
		Short: "Copy new and changed files between a folder and a prefix",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.obsClient(cmd, f)
			if err != nil {
				return err
			}
			st, err := c.Sync(cmd.Context(), args[0], args[1], del)
			if err != nil {
				return err
			}
			return printStats(g, cmd, "synced", st)
		},
	}
	cmd.Flags().BoolVar(&del, "delete", false, "delete files in DST that SRC does not have")
	return cmd
}

func newObsRmCmd(g *globals, f *obsFlags) *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "rm s3://bucket/key",
		Short: "Remove an object, or with -r everything under a prefix",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := remoteArg(args[0])
			if err != nil {
				return err
			}
			c, err := g.obsClient(cmd, f)
			if err != nil {
				return err
			}
			n, err := c.Remove(cmd.Context(), u, recursive)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d object(s)\n", n)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove every object under the prefix")
	return cmd
}

func newObsCatCmd(g *globals, f *obsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "cat s3://bucket/key",
		Short: "Print an object",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := remoteArg(args[0])
			if err != nil {
				return err
			}
			if u.Key == "" || strings.HasSuffix(u.Key, "/") {
				return fmt.Errorf("%s names no object", args[0])
			}
			c, err := g.obsClient(cmd, f)
			if err != nil {
				return err
			}
			return c.Cat(cmd.Context(), u, cmd.OutOrStdout())
		},
	}
}
