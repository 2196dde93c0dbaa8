"""A very simple MNIST classifier: softmax regression trained with
gradient descent, on one node. A numpy port of TensorFlow's
mnist_softmax.py as the ModelArts guide runs it:

  bash -x /home/work/run_train.sh python \
      /home/work/user-job-dir/new/mnist/mnist_softmax.py \
      --data_url /home/work/user-job-dir/new/mnist_data

--data_url is a local directory or an s3:// / obs:// URL holding the idx
files (plain or .gz); --train_url, when given, receives model.npz and
metrics.json. The last line is "test accuracy: 0.XXXX".
"""

import argparse
import sys
import time

import numpy as np

import input_data
import mnist_util


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_url", default="", help="directory or s3:// URL of the idx files (default $DLS_DATA_URL)")
    p.add_argument("--train_url", default="", help="where to save model.npz and metrics.json (default $DLS_TRAIN_URL)")
    p.add_argument("--train_steps", type=int, default=2000, help="number of training steps")
    p.add_argument("--batch_size", type=int, default=100, help="training batch size")
    p.add_argument("--learning_rate", type=float, default=0.1, help="gradient descent learning rate (the MNIST original used 0.5, which oscillates on Fashion-MNIST)")
    p.add_argument("--log_every", type=int, default=1, help="print progress every this many steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    # The platform may add flags of its own (e.g. --num_gpus): keep going.
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print("ignoring unknown arguments: %s" % " ".join(unknown), flush=True)
    args.data_url = mnist_util.default_url(args.data_url, "DLS_DATA_URL")
    args.train_url = mnist_util.default_url(args.train_url, "DLS_TRAIN_URL")
    if not args.data_url:
        p.error("--data_url (or DLS_DATA_URL) is required")
    if args.train_steps <= 0 or args.batch_size <= 0:
        p.error("--train_steps and --batch_size must be positive")
    return args


def main(argv):
    args = parse_args(argv)
    start = time.time()
    mnist = input_data.read_data_sets(args.data_url, seed=args.seed)
    print("data: %d training, %d validation, %d test examples from %s (%.1f s)" % (
        mnist.train.num_examples, mnist.validation.num_examples, mnist.test.num_examples,
        args.data_url, time.time() - start), flush=True)

    # The model: y = softmax(x W + b), W and b starting at zero.
    w = np.zeros((784, 10), dtype=np.float32)
    b = np.zeros(10, dtype=np.float32)
    lr = np.float32(args.learning_rate)
    train_start = time.time()
    for step in range(1, args.train_steps + 1):
        x, y = mnist.train.next_batch(args.batch_size)
        loss, p = mnist_util.softmax_cross_entropy(x @ w + b, y)
        p[np.arange(y.shape[0]), y] -= 1.0
        p /= y.shape[0]
        w -= lr * (x.T @ p)
        b -= lr * p.sum(axis=0)
        if step % args.log_every == 0 or step == args.train_steps:
            print("step %d/%d: cross entropy %.4f" % (step, args.train_steps, loss), flush=True)
    elapsed = time.time() - train_start

    val_ce, _ = mnist_util.softmax_cross_entropy(mnist.validation.images @ w + b, mnist.validation.labels)
    val_acc = mnist_util.accuracy(mnist.validation.images @ w + b, mnist.validation.labels)
    test_acc = mnist_util.accuracy(mnist.test.images @ w + b, mnist.test.labels)
    print("training time: %.2f s" % elapsed)
    print("After %d training step(s), validation cross entropy = %g, validation accuracy = %.4f" % (
        args.train_steps, val_ce, val_acc))
    mnist_util.save_outputs(args.train_url, {"w": w, "b": b}, {
        "example": "mnist_softmax", "train_steps": args.train_steps, "batch_size": args.batch_size,
        "validation_cross_entropy": val_ce, "validation_accuracy": val_acc,
        "test_accuracy": test_acc, "training_seconds": round(elapsed, 3),
    })
    print("test accuracy: %.4f" % test_acc, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
