// Package samples holds the platform guide's two mnist examples, ported
// from TensorFlow to numpy, and the verbs behind `malocal samples install`
// and `malocal demo`.
//
// The python files (embedded in the binary, see FS) are laid out as the
// guide has them in the code dir s3://<bucket>/new/:
//
//	new/mnist/mnist_softmax.py       single node: softmax regression
//	new/mnist/mnist_replica_kill.py  parameter servers and workers over TCP
//	new/mnist/input_data.py          the idx loader (plain or .gz, local or s3://)
//	new/mnist/mnist_util.py          the model's maths, Adam, saving outputs
//	new/mnist_data/                  the four idx files (Debian's dataset-fashion-mnist)
//
// Install uploads them and builds the sample image on an official base;
// Demo goes from nothing to both examples done (emulator, base, install,
// the two jobs with the guide's run commands) and returns a Summary with
// each job's status, test accuracy and time.
//
//	sum, err := samples.Demo(ctx, samples.DemoOptions{Bin: "/usr/local/bin/malocal", DataDir: dir, Progress: os.Stderr})
//	if err != nil { /* nothing ran, or interrupted */ }
//	sum.WriteSummary(os.Stdout)
//	err = sum.Failed() // a job that did not complete
package samples
