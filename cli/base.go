package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/emulator"
)

func newBaseCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "base",
		Short: "Build, list and register the official base images custom images are built on",
	}
	cmd.AddCommand(newBaseBuildCmd(g), newBaseLsCmd(g), newBaseAddCmd(g))
	return cmd
}

// baseRegistry is --registry, else the running emulator's registry.
func (g *globals) baseRegistry(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	dd, err := g.openDataDir()
	if err != nil {
		return "", err
	}
	rt, err := dd.Running()
	if errors.Is(err, emulator.ErrNotRunning) {
		return "", &exitError{code: 2, err: fmt.Errorf("%w: start it with `malocal up`, or pass --registry HOST:PORT", baseimage.ErrRegistryNotRunning)}
	}
	if err != nil {
		return "", err
	}
	return rt.Registry, nil
}

// registryAuth is what malocal's own pushes present to the registry: the
// emulator's credentials when reg is the registry of the emulator on the
// data dir (flag empty), else none (another registry never sees them).
func (g *globals) registryAuth(flag string) authn.Authenticator {
	if flag != "" {
		return nil
	}
	dd, err := g.openDataDir()
	if err != nil {
		return nil
	}
	c, err := dd.Credentials()
	if err != nil || c.RegistryPassword == "" {
		return nil
	}
	return &authn.Basic{Username: c.RegistryUsername, Password: c.RegistryPassword}
}

func (g *globals) baseCatalog() (*baseimage.Catalog, error) {
	p, err := g.dataDirPath()
	if err != nil {
		return nil, err
	}
	return baseimage.OpenCatalog(p), nil
}

func newBaseBuildCmd(g *globals) *cobra.Command {
	var o baseimage.BuildOptions
	var registry string
	cmd := &cobra.Command{
		Use:   "build --from SOURCE [--name NAME] [--tag TAG]",
		Short: "Build a base image offline: the source plus the platform toolkit layer, pushed to the registry",
		Long: `Build an official base image: SOURCE with one layer on top that adds the user
work (uid/gid 1101), /cache, and the platform toolkit in /home/work
(run_train.sh, the code downloader, the log uploader, the moxing module).
The base is pushed to the emulator's registry and recorded for the image audit;
rebuilding a name:tag, or --supersedes, makes earlier builds superseded.

SOURCE is one of:
  docker:REF      an image in the local Docker engine (docker:python:3.11-slim,
                  docker:nvidia/cuda:12.4.1-runtime-ubuntu22.04 with --gpu)
  debian:SUITE    a Debian root filesystem made by mmdebstrap from the host's
                  apt sources, with python3 and the --include packages
  PATH            an image tarball (docker save output), an OCI layout (dir or
                  tar), or a root filesystem tarball (oci:, image:, rootfs:
                  prefixes force the kind)`,
		Example: `  malocal base build --from debian:bookworm --include python3-pip,python3-numpy,libibverbs1
  malocal base build --name eiwizard/custom-gpu-cuda-base --tag 1.0 --gpu --from docker:nvidia/cuda:12.4.1-runtime-ubuntu22.04`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Output == "" || registry != "" {
				if o.Registry, err = g.baseRegistry(registry); err != nil {
					return err
				}
				o.Auth = g.registryAuth(registry)
				if o.Catalog, err = g.baseCatalog(); err != nil {
					return err
				}
			}
			o.Progress = cmd.ErrOrStderr()
			res, err := baseimage.Build(cmd.Context(), o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				return g.printData(out, res, nil, nil)
			}
			fmt.Fprintf(out, "built %s@%s (%d layers)\n", res.Ref, res.Digest, len(res.DiffIDs))
			if o.Output != "" {
				fmt.Fprintf(out, "written to %s\n", o.Output)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", baseimage.DefaultCPUName, "repository name of the base")
	f.StringVar(&o.Tag, "tag", baseimage.DefaultTag, "tag of the base")
	f.StringVar(&o.From, "from", "", "source: docker:REF, debian:SUITE, or a tarball / OCI layout path")
	f.StringSliceVar(&o.Include, "include", nil, "Debian packages to add for a debian:SUITE source (python3 and python-is-python3 are always added)")
	f.BoolVar(&o.GPU, "gpu", false, "a GPU base: jobs on images built from it default to GPU flavors")
	f.StringSliceVar(&o.Supersedes, "supersedes", nil, "other NAME:TAG bases this build replaces")
	f.StringVar(&registry, "registry", "", "registry HOST:PORT to push to (default: the running emulator's)")
	f.StringVar(&o.Output, "output-tar", "", "also write the image to this tarball (docker load reads it); alone, build without pushing")
	f.StringVar(&o.Arch, "arch", "", "architecture recorded for a root filesystem source (default: this machine's)")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

func newBaseLsCmd(g *globals) *cobra.Command {
	var current bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the official bases: current and superseded builds",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := g.baseCatalog()
			if err != nil {
				return err
			}
			recs, err := cat.List()
			if current {
				recs, err = cat.Current()
			}
			if err != nil {
				return err
			}
			if recs == nil {
				recs = []baseimage.Record{}
			}
			rows := make([][]string, 0, len(recs))
			for _, r := range recs {
				status := "current"
				if r.Superseded {
					status = "superseded"
					if r.SupersededBy != "" {
						status += " by " + shortRef(r.SupersededBy)
					}
				}
				rows = append(rows, []string{r.Name, r.Tag, shortDigest(r.Digest), strconv.FormatBool(r.GPU),
					status, r.Created.Local().Format(time.DateTime), r.Source})
			}
			return g.printData(cmd.OutOrStdout(), recs, []string{"NAME", "TAG", "DIGEST", "GPU", "STATUS", "CREATED", "SOURCE"}, rows)
		},
	}
	cmd.Flags().BoolVar(&current, "current", false, "only the current builds")
	return cmd
}

// shortRef shortens the digest of name:tag@sha256:….
func shortRef(s string) string {
	if ref, d, ok := strings.Cut(s, "@"); ok {
		return ref + "@" + shortDigest(d)
	}
	return s
}

func newBaseAddCmd(g *globals) *cobra.Command {
	var o baseimage.AddOptions
	var registry string
	cmd := &cobra.Command{
		Use:   "add NAME:TAG",
		Short: "Register an image already in the registry (built with the toolkit) as an official base",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := g.baseRegistry(registry)
			if err != nil {
				return err
			}
			tag, err := name.NewTag(args[0], name.Insecure, name.WithDefaultRegistry(strings.TrimPrefix(reg, "http://")))
			if err != nil {
				return fmt.Errorf("%s: want NAME:TAG (e.g. eiwizard/custom-cpu-base:1.0): %w", args[0], err)
			}
			o.Registry, o.Name, o.Tag = tag.RegistryStr(), tag.RepositoryStr(), tag.TagStr()
			o.Auth = g.registryAuth(registry)
			cat, err := g.baseCatalog()
			if err != nil {
				return err
			}
			rec, err := baseimage.Add(cmd.Context(), cat, o)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printData(cmd.OutOrStdout(), rec, nil, nil)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s@%s as an official base\n", rec.Ref(), rec.Digest)
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.GPU, "gpu", false, "mark it a GPU base (default: its org.malocal.base.gpu label)")
	cmd.Flags().StringSliceVar(&o.Supersedes, "supersedes", nil, "other NAME:TAG bases it replaces")
	cmd.Flags().StringVar(&registry, "registry", "", "registry HOST:PORT (default: the running emulator's)")
	return cmd
}
