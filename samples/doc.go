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
// Demo runs both examples with the guide's run commands and reports
// status, accuracy and time.
//
//	res, err := samples.Install(ctx, samples.InstallOptions{S3: s3, Registry: reg})
//	...
//	sum, err := samples.RunDemo(ctx, samples.DemoOptions{Client: c, S3: s3, Image: res.Image})
package samples
