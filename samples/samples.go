package samples

import (
	"embed"
	"os"
	"path/filepath"
	"strings"
)

//go:embed mnist/*.py
var files embed.FS

// The guide's layout in the object store and in the job's containers.
const (
	DefaultBucket = "malocal-demo"
	// CodePrefix is the code dir (app_url) under the bucket.
	CodePrefix = "new/"
	// ScriptsPrefix and DataPrefix hold the scripts and the idx files.
	ScriptsPrefix = CodePrefix + "mnist/"
	DataPrefix    = CodePrefix + "mnist_data/"
	// OutputPrefix holds each example's outputs, LogPrefix its task logs.
	OutputPrefix = "out/"
	LogPrefix    = "logs/"
	// JobCodeDir is where run_train.sh downloads the code dir in a job.
	JobCodeDir = "/home/work/user-job-dir/new"
	// RunTrain is the platform's launcher in the base image.
	RunTrain = "/home/work/run_train.sh"

	// DefaultImage is the sample image: an official base plus `python`.
	DefaultImage = "demo/mnist:1.0"
	// FashionMNIST is where Debian's dataset-fashion-mnist puts the data.
	FashionMNIST = "/usr/share/datasets/fashion-mnist"
)

// Scripts of the two examples.
const (
	Softmax = "mnist_softmax.py"
	Replica = "mnist_replica_kill.py"
	DDP     = "mnist_ddp.py" // PyTorch DistributedDataParallel
)

// BaseInclude is the package list the demo's base is built with when it
// builds one from debian:SUITE (python3 and python-is-python3 are always added): pip3 as the
// platform's bases have it, numpy for the samples, and the RDMA user
// library (libibverbs1) that the platform's training bases ship for
// multi-node networks. PyTorch's gloo backend links it; its maintainer
// script adds the system group rdma, so the group must come with the base:
// an image layer that adds it changes /etc/group, which the audit refuses
// (MA-PROT-001).
var BaseInclude = []string{"python3-pip", "python3-numpy", "libibverbs1"}

// IdxFiles are the four files of MNIST and Fashion-MNIST, each plain or
// with .gz.
var IdxFiles = []string{
	"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
	"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
}

// RunCommand is the guide's run command of an example script:
//
//	bash -x /home/work/run_train.sh python /home/work/user-job-dir/new/mnist/SCRIPT --data_url /home/work/user-job-dir/new/mnist_data
//
// with args appended (none in the guide; e.g. --sync_replicas).
func RunCommand(script string, args ...string) []string {
	cmd := []string{"bash", "-x", RunTrain, "python", JobCodeDir + "/mnist/" + script, "--data_url", JobCodeDir + "/mnist_data"}
	return append(cmd, args...)
}

// CheckData says whether dir holds the four idx files (plain or .gz), and
// which are missing.
func CheckData(dir string) (missing []string) {
	for _, n := range IdxFiles {
		found := false
		for _, c := range []string{n, n + ".gz", strings.Replace(n, "-idx", ".idx", 1), strings.Replace(n, "-idx", ".idx", 1) + ".gz"} {
			if st, err := os.Stat(filepath.Join(dir, c)); err == nil && st.Mode().IsRegular() {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, n)
		}
	}
	return missing
}
