package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/spf13/cobra"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "List, remove and audit images in the embedded registry",
	}
	cmd.AddCommand(newImageLsCmd(g), newImageRmCmd(g))
	return cmd
}

func newImageLsCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the registry's repositories, tags, digests and sizes",
		Long: `List the registry's images, one line per tag. Manifests no tag points at
(an image pushed again under its tag, or one pushed by digest) are hidden;
--all lists them too, with TAG <none>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			imgs, err := c.Images(cmd.Context())
			if err != nil {
				return err
			}
			shown, hidden := visibleImages(imgs, all)
			rows := make([][]string, 0, len(shown))
			for _, im := range shown {
				tag := im.Tag
				if tag == "" {
					tag = "<none>"
				}
				rows = append(rows, []string{im.Repository, tag, shortDigest(im.Digest), humanBytes(im.Size)})
			}
			if err := g.printData(cmd.OutOrStdout(), shown, []string{"REPOSITORY", "TAG", "DIGEST", "SIZE"}, rows); err != nil {
				return err
			}
			if hidden > 0 && g.output == "table" {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d untagged manifest(s) not shown: `malocal image ls --all` lists them, `malocal image rm REPO@DIGEST` removes one\n", hidden)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also list manifests no tag points at")
	return cmd
}

// visibleImages drops untagged manifests unless all; hidden counts them.
func visibleImages(imgs []api.Image, all bool) (shown []api.Image, hidden int) {
	shown = []api.Image{}
	for _, im := range imgs {
		if im.Tag == "" && !all {
			hidden++
			continue
		}
		shown = append(shown, im)
	}
	return shown, hidden
}

func newImageRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm REPO:TAG|REPO@DIGEST...",
		Short: "Remove a tag (and its manifest when no other tag points at it), or a manifest and all its tags",
		Long: `Remove images from the registry. REPO:TAG removes the tag and, as docker rmi
does, the manifest when no other tag of the repository points at it; REPO@DIGEST
removes the manifest and every tag pointing at it. The space comes back with
` + "`malocal registry gc`" + `.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			for _, a := range args {
				repo, ref, err := api.ParseImageRef(a)
				if err != nil {
					return err
				}
				imgs, err := c.Images(cmd.Context())
				if err != nil {
					return err
				}
				if err := c.DeleteImage(cmd.Context(), repo, ref); err != nil {
					return imageError(err, a)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "deleted", api.FormatImageRef(repo, ref))
				if d := danglingAfterUntag(imgs, repo, ref); d != "" {
					if err := c.DeleteImage(cmd.Context(), repo, d); err != nil && !errors.Is(err, api.ErrNotFound) {
						return fmt.Errorf("removing the manifest %s@%s that no tag points at any more: %w", repo, d, err)
					}
					fmt.Fprintln(cmd.OutOrStdout(), "deleted", repo+"@"+d)
				}
			}
			return nil
		},
	}
}

// danglingAfterUntag is the digest tag ref of repo pointed at, when no
// other tag of repo points at it and no index in repo may reference it;
// "" otherwise (ref is a digest, or the manifest stays in use).
func danglingAfterUntag(imgs []api.Image, repo, ref string) string {
	if strings.Contains(ref, ":") {
		return ""
	}
	var digest string
	for _, im := range imgs {
		if im.Repository == repo && im.Tag == ref {
			digest = im.Digest
		}
	}
	if digest == "" {
		return ""
	}
	for _, im := range imgs {
		if im.Repository != repo {
			continue
		}
		if im.Digest == digest && im.Tag != "" && im.Tag != ref {
			return "" // another tag
		}
		if strings.Contains(im.MediaType, "index") || strings.Contains(im.MediaType, "manifest.list") {
			return "" // an index may reference it
		}
	}
	return digest
}

// imageError says in plain words what a registry error means for ref.
func imageError(err error, ref string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if errors.Is(err, api.ErrNotFound) || strings.Contains(msg, "MANIFEST_UNKNOWN") || strings.Contains(msg, "NAME_UNKNOWN") {
		return fmt.Errorf("image %s is not in the registry: `malocal image ls` lists the images there (push one with docker push $MALOCAL_REGISTRY/NAME:TAG)", ref)
	}
	return err
}

// plainImageErrors makes the image subcommands that take an image name
// say in plain words when it is not in the registry.
func plainImageErrors(root *cobra.Command) {
	for _, c := range root.Commands() {
		if c.Name() != "image" {
			continue
		}
		for _, sc := range c.Commands() {
			run := sc.RunE
			if run == nil || sc.Name() == "rm" {
				continue
			}
			sc.RunE = func(cmd *cobra.Command, args []string) error {
				err := run(cmd, args)
				if err == nil || len(args) == 0 {
					return err
				}
				pe := imageError(err, args[0])
				if pe == err {
					return err
				}
				var ee *exitError
				if errors.As(err, &ee) {
					return &exitError{code: ee.code, err: pe}
				}
				return pe
			}
		}
	}
}

func newRegistryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Log in to and maintain the embedded registry",
	}
	cmd.AddCommand(newRegistryLoginCmd(g))
	var grace time.Duration
	gc := &cobra.Command{
		Use:   "gc",
		Short: "Delete blobs no image references (those written in the last hour are kept for pushes in flight)",
		Long: `Delete the registry's blobs that no image references any more. Blobs written
within the grace period (an hour) are kept, since a push in flight may be
about to reference them; the report says how many were kept. --grace 0s
collects them too, now: do that only when no push is running.`,
		Example: `  malocal image rm my-train:1.0
  malocal registry gc --grace 0s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if grace < 0 {
				return api.Invalidf("--grace: must not be negative, got %s", grace)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var res *api.GCResult
			if cmd.Flags().Changed("grace") {
				res, err = c.RegistryGCGrace(cmd.Context(), grace)
			} else {
				res, err = c.RegistryGC(cmd.Context())
			}
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printData(cmd.OutOrStdout(), res, nil, nil)
			}
			fmt.Fprint(cmd.OutOrStdout(), gcReport(res))
			return nil
		},
	}
	gc.Flags().DurationVar(&grace, "grace", time.Hour, "keep unreferenced blobs written this recently (0s: collect them all now)")
	cmd.AddCommand(gc)
	return cmd
}

// gcReport is what `registry gc` prints: what it freed, and what the grace
// period kept with how to collect it now.
func gcReport(res *api.GCResult) string {
	s := fmt.Sprintf("deleted %d blobs (%s) and %d stale uploads\n", res.BlobsDeleted, humanBytes(res.BytesFreed), res.UploadsDeleted)
	if res.BlobsKept > 0 {
		s += fmt.Sprintf("kept %d unreferenced blobs (%s) written within the last %s, for pushes in flight: `malocal registry gc --grace 0s` collects them now\n",
			res.BlobsKept, humanBytes(res.BytesKept), time.Duration(res.Grace))
	}
	return s
}

// shortDigest shortens "sha256:<hex>" to docker's 12 hex digits.
func shortDigest(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return alg + ":" + hex[:12]
}

// humanBytes prints n in binary units, as docker does.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
