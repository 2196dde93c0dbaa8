package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/samples"
)

func newSamplesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "samples",
		Short: "The platform guide's mnist examples: install them in the object store and the registry",
	}
	cmd.AddCommand(newSamplesInstallCmd(g), newSamplesExportCmd())
	return cmd
}

func newSamplesExportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "export DIR",
		Short: "Write the mnist example scripts to DIR/mnist/, to read, change and upload yourself",
		Example: `  malocal samples export .
  malocal obs mb s3://my-bucket
  malocal obs cp -r mnist s3://my-bucket/new/mnist`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := samples.WriteTo(args[0]); err != nil {
				return fmt.Errorf("writing the samples to %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", filepath.Join(args[0], "mnist"))
			return nil
		},
	}
}

func newSamplesInstallCmd(g *globals) *cobra.Command {
	o := samples.InstallOptions{}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Upload the mnist samples and data in the guide's layout and build the sample image on the base",
		Long: `Upload the guide's two mnist examples (numpy ports of mnist_softmax.py and
mnist_replica_kill.py) and the MNIST-format data to the running emulator's
object store, in the guide's layout:

  s3://BUCKET/new/mnist/        the scripts (the code dir is s3://BUCKET/new/)
  s3://BUCKET/new/mnist_data/   the four idx files (Debian's dataset-fashion-mnist)

then build the sample image (the official base plus /usr/local/bin/python)
and push it to the registry. Offline; files already in place are kept.

With --engine pytorch the image is the base plus Debian's python3-torch,
made the guide's way: the packages the base lacks are downloaded with the
host's apt-get, a container of the base installs them (no network), and
the container is committed and pushed (docker needed). It runs
mnist/mnist_ddp.py, PyTorch DistributedDataParallel on N nodes.
The base must exist: malocal base build --from debian:bookworm --include python3-pip,python3-numpy,libibverbs1`,
		Example: `  malocal samples install
  malocal job submit --name mnist --image demo/mnist:1.0 --app-url s3://malocal-demo/new/ \
    -- bash -x /home/work/run_train.sh python /home/work/user-job-dir/new/mnist/mnist_softmax.py \
       --data_url /home/work/user-job-dir/new/mnist_data
  malocal samples install --engine pytorch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s3, err := g.obsClient(cmd, &obsFlags{noProgress: true, parallel: 8})
			if err != nil {
				return err
			}
			if o.Registry, err = g.baseRegistry(""); err != nil {
				return err
			}
			o.Auth = g.registryAuth("")
			o.S3, o.Progress = s3, cmd.ErrOrStderr()
			res, err := samples.Install(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printData(cmd.OutOrStdout(), res, nil, nil)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "code dir  %s (mnist/: %d scripts)\n", res.AppURL, res.Scripts)
			fmt.Fprintf(w, "data      %s\n", res.DataURL)
			fmt.Fprintf(w, "image     %s@%s\n", res.Image, res.Digest)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Bucket, "bucket", samples.DefaultBucket, "bucket to install into (created when missing)")
	f.StringVar(&o.DataDir, "data", samples.FashionMNIST, "directory with the MNIST idx files (plain or .gz)")
	f.StringVar(&o.Base, "base", baseimage.DefaultCPUName+":"+baseimage.DefaultTag, "the official base the sample image is built on")
	f.StringVar(&o.Image, "image", "", "name:tag of the sample image (default "+samples.DefaultImage+", "+samples.DefaultTorchImage+" with --engine pytorch)")
	f.StringVar(&o.Engine, "engine", samples.EngineNumpy, "numpy: the image for the guide's examples; pytorch: an image with Debian's python3-torch for mnist_ddp.py")
	return cmd
}
