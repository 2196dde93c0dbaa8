package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/samples"
)

func newDemoCmd(g *globals) *cobra.Command {
	o := samples.DemoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the platform guide's two mnist examples end to end, offline",
		Long: `Go from nothing to the guide's two examples done:

 1. start the emulator (malocal up) on the data dir when none runs; it is
    stopped again at the end, and on Ctrl-C after the jobs are stopped;
 2. build the official base offline when it is missing (mmdebstrap, with
    python3-pip, python3-numpy and libibverbs1), or from --from;
 3. upload the samples and the data (malocal samples install) and build the
    sample image on the base;
 4. submit mnist_softmax.py (1 node) and mnist_replica_kill.py (4 nodes: 2
    parameter servers, 2 workers) with the guide's exact run commands, wait
    with progress, and print each job's status, test accuracy, time,
    outputs and logs.

With --engine pytorch it builds an image with Debian's python3-torch on the
base instead (the guide's way: a container of the base installs it, and is
committed) and runs mnist_ddp.py, PyTorch DistributedDataParallel over the
job's BATCH_CUSTOM0_HOSTS, on 2 nodes.

Running it again reuses the emulator, the base, the data and the image.
Needs Docker, mmdebstrap (or --from) and Debian's dataset-fashion-mnist
(or --data with MNIST's idx files).`,
		Example: `  malocal demo
  malocal demo --from docker:my-python-numpy:latest
  malocal demo --replica-nodes 6 --replica-arg=--sync_replicas
  malocal demo --engine pytorch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.DataDir, err = g.dataDirPath(); err != nil {
				return err
			}
			if o.Bin, err = os.Executable(); err != nil {
				return err
			}
			if err := samples.CheckEngine(o.Engine); err != nil {
				return err
			}
			if o.DDPNodes < 1 {
				return fmt.Errorf("--ddp-nodes %d: want at least 1", o.DDPNodes)
			}
			if o.ReplicaNodes < 2 {
				return fmt.Errorf("--replica-nodes %d: mnist_replica_kill.py needs at least 2 (parameter servers and workers)", o.ReplicaNodes)
			}
			o.Progress = cmd.ErrOrStderr()
			sum, err := samples.Demo(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.output == "json" {
				if err := g.printData(cmd.OutOrStdout(), sum, nil, nil); err != nil {
					return err
				}
			} else {
				sum.WriteSummary(cmd.OutOrStdout())
			}
			return sum.Failed()
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.From, "from", samples.DefaultFrom, "source of the base when it is missing: debian:SUITE (mmdebstrap), docker:REF, or an image / root filesystem tarball (see malocal base build)")
	f.StringSliceVar(&o.Include, "include", samples.BaseInclude, "Debian packages added to a debian:SUITE base (python3 and python-is-python3 are always there)")
	f.StringVar(&o.Base, "base", baseimage.DefaultCPUName+":"+baseimage.DefaultTag, "the official base the sample image is built on")
	f.StringVar(&o.Data, "data", samples.FashionMNIST, "directory with the MNIST idx files (plain or .gz)")
	f.StringVar(&o.Bucket, "bucket", samples.DefaultBucket, "bucket for code, data, outputs and logs")
	f.StringVar(&o.Image, "image", "", "name:tag of the sample image (default "+samples.DefaultImage+", "+samples.DefaultTorchImage+" with --engine pytorch)")
	f.IntVar(&o.ReplicaNodes, "replica-nodes", samples.DefaultReplicaNodes, "nodes of mnist_replica_kill.py: the first half parameter servers, the rest workers")
	f.StringArrayVar(&o.ReplicaArgs, "replica-arg", nil, "flag added to mnist_replica_kill.py's command (repeatable), e.g. --replica-arg=--sync_replicas (advised with more than one worker)")
	f.StringVar(&o.Engine, "engine", samples.EngineNumpy, "numpy: the guide's two examples; pytorch: mnist_ddp.py (PyTorch DistributedDataParallel) on an image with Debian's python3-torch")
	f.IntVar(&o.DDPNodes, "ddp-nodes", samples.DefaultDDPNodes, "nodes of mnist_ddp.py with --engine pytorch")
	f.DurationVar(&o.Timeout, "timeout", 30*time.Minute, "how long to wait for the jobs")
	f.StringArrayVar(&o.UpArgs, "up-flag", nil, "flag for the emulator (malocal up) the demo starts when none runs (repeatable), e.g. --up-flag=--api-addr=127.0.0.1:0")
	return cmd
}
