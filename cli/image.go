package cli

import (
	"fmt"
	"strings"

	"github.com/malocal/malocal/api"
	"github.com/spf13/cobra"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "List and remove images in the embedded registry",
	}
	cmd.AddCommand(newImageLsCmd(g), newImageRmCmd(g))
	return cmd
}

func newImageLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the registry's repositories, tags, digests and sizes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			imgs, err := c.Images(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(imgs))
			for _, im := range imgs {
				tag := im.Tag
				if tag == "" {
					tag = "<none>"
				}
				rows = append(rows, []string{im.Repository, tag, shortDigest(im.Digest), humanBytes(im.Size)})
			}
			return g.printData(cmd.OutOrStdout(), imgs, []string{"REPOSITORY", "TAG", "DIGEST", "SIZE"}, rows)
		},
	}
}

func newImageRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm REPO:TAG|REPO@DIGEST...",
		Short: "Remove a tag, or a manifest and all its tags (run `malocal registry gc` to free the space)",
		Args:  cobra.MinimumNArgs(1),
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
				if err := c.DeleteImage(cmd.Context(), repo, ref); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "deleted", api.FormatImageRef(repo, ref))
			}
			return nil
		},
	}
}

func newRegistryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Log in to and maintain the embedded registry",
	}
	cmd.AddCommand(newRegistryLoginCmd(g))
	cmd.AddCommand(&cobra.Command{
		Use:   "gc",
		Short: "Delete blobs no image references (blobs written in the last hour are kept for pushes in flight)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.RegistryGC(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printData(cmd.OutOrStdout(), res, nil, nil)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %d blobs (%s) and %d stale uploads\n",
				res.BlobsDeleted, humanBytes(res.BytesFreed), res.UploadsDeleted)
			return nil
		},
	})
	return cmd
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
