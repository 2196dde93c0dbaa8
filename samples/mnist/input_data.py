"""MNIST data in the idx format, for the numpy ports of the mnist examples.

read_data_sets(data_url) reads the four files of MNIST, or of a data set in
the same format such as Fashion-MNIST:

    train-images-idx3-ubyte   train-labels-idx1-ubyte
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte

each plain or gzipped (.gz). data_url is a local directory, or an s3:// or
obs:// URL that is first copied to a local cache with the toolkit's moxing
module. As TensorFlow's read_data_sets does, the first 5000 training
examples are held out as the validation set; images are float32 in [0, 1]
of shape (n, 784), labels int64 class numbers (one_hot=True gives one-hot
float32 rows).
"""

import gzip
import os
import struct
import tempfile

import numpy as np

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
NUM_CLASSES = 10


class DataError(Exception):
    """A missing or malformed data file."""


def _open(path):
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def find_file(data_dir, name):
    """The path of name or name.gz in data_dir (also accepting the
    t10k-images.idx3-ubyte spelling some mirrors use)."""
    candidates = [name, name + ".gz"]
    dotted = name.replace("-idx", ".idx")
    candidates += [dotted, dotted + ".gz"]
    for c in candidates:
        p = os.path.join(data_dir, c)
        if os.path.isfile(p):
            return p
    raise DataError("%s: no %s or %s.gz" % (data_dir, name, name))


def read_idx(path, magic):
    """Reads one idx file; returns a uint8 array of its dimensions."""
    with _open(path) as f:
        data = f.read()
    if len(data) < 8:
        raise DataError("%s: too short for an idx file" % path)
    got = struct.unpack(">I", data[:4])[0]
    if got != magic:
        raise DataError("%s: magic number %d, want %d" % (path, got, magic))
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    count = 1
    for d in dims:
        count *= d
    if len(data) - header != count:
        raise DataError("%s: %d bytes of data, dimensions %s want %d" % (path, len(data) - header, dims, count))
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_images(path):
    a = read_idx(path, IMAGE_MAGIC)
    if a.ndim != 3:
        raise DataError("%s: images have %d dimensions, want 3" % (path, a.ndim))
    return (a.reshape(a.shape[0], -1).astype(np.float32)) / np.float32(255.0)


def read_labels(path):
    a = read_idx(path, LABEL_MAGIC)
    if a.ndim != 1:
        raise DataError("%s: labels have %d dimensions, want 1" % (path, a.ndim))
    if a.size and a.max() >= NUM_CLASSES:
        raise DataError("%s: label %d out of range" % (path, a.max()))
    return a.astype(np.int64)


def one_hot(labels, n=NUM_CLASSES):
    out = np.zeros((labels.shape[0], n), dtype=np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


class DataSet:
    """Images and labels with shuffled mini-batches, epoch after epoch."""

    def __init__(self, images, labels, seed=0):
        if images.shape[0] != labels.shape[0]:
            raise DataError("%d images but %d labels" % (images.shape[0], labels.shape[0]))
        self.images = images
        self.labels = labels
        self.num_examples = images.shape[0]
        self.epochs_completed = 0
        self._rng = np.random.RandomState(seed)
        self._perm = self._rng.permutation(self.num_examples)
        self._pos = 0

    def next_batch(self, batch_size):
        if batch_size <= 0 or self.num_examples == 0:
            raise ValueError("batch size %d of %d examples" % (batch_size, self.num_examples))
        idx = []
        need = batch_size
        while need > 0:
            take = min(need, self.num_examples - self._pos)
            idx.append(self._perm[self._pos:self._pos + take])
            self._pos += take
            need -= take
            if self._pos == self.num_examples:
                self.epochs_completed += 1
                self._perm = self._rng.permutation(self.num_examples)
                self._pos = 0
        idx = np.concatenate(idx)
        return self.images[idx], self.labels[idx]


class DataSets:
    def __init__(self, train, validation, test):
        self.train = train
        self.validation = validation
        self.test = test


def cache_dir():
    """A writable local directory for data copied from the object store:
    /cache on the platform, else a temp dir."""
    for d in (os.environ.get("MALOCAL_CACHE_DIR", ""), "/cache"):
        if d and os.path.isdir(d) and os.access(d, os.W_OK):
            return tempfile.mkdtemp(prefix="mnist_data-", dir=d)
    return tempfile.mkdtemp(prefix="mnist_data-")


def local_dir(data_url):
    """data_url as a local directory: an s3:// or obs:// URL is copied to a
    cache directory first with moxing."""
    if data_url.startswith("s3://") or data_url.startswith("obs://"):
        import moxing as mox

        dst = cache_dir()
        print("copying %s to %s" % (data_url, dst), flush=True)
        mox.file.copy_parallel(data_url, dst)
        return dst
    return data_url


def read_data_sets(data_url, validation_size=5000, seed=0, one_hot_labels=False):
    d = local_dir(data_url)
    if not os.path.isdir(d):
        raise DataError("data dir %s does not exist" % d)
    train_images = read_images(find_file(d, FILES["train_images"]))
    train_labels = read_labels(find_file(d, FILES["train_labels"]))
    test_images = read_images(find_file(d, FILES["test_images"]))
    test_labels = read_labels(find_file(d, FILES["test_labels"]))
    n = train_images.shape[0]
    if validation_size < 0:
        raise DataError("validation size %d" % validation_size)
    if validation_size >= n:
        # A small data set (a test's, a subset): hold out a sixth.
        print("%d training examples: holding out %d for validation, not %d" % (n, n // 6, validation_size), flush=True)
        validation_size = n // 6
    if one_hot_labels:
        train_labels, test_labels = one_hot(train_labels), one_hot(test_labels)
    v = validation_size
    return DataSets(
        DataSet(train_images[v:], train_labels[v:], seed=seed),
        DataSet(train_images[:v], train_labels[:v], seed=seed),
        DataSet(test_images, test_labels, seed=seed),
    )
