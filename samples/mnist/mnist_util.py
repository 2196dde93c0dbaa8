"""Helpers shared by the mnist examples: the model's maths in numpy, the
Adam optimizer, and saving the trained weights and metrics to --train_url
(a local directory, or s3:// / obs:// through the toolkit's moxing)."""

import json
import os
import shutil
import tempfile

import numpy as np


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of integer labels, and the softmax probabilities."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = labels.shape[0]
    ce = -np.log(np.maximum(p[np.arange(n), labels], 1e-12)).mean()
    return float(ce), p


def accuracy(logits, labels):
    return float((logits.argmax(axis=1) == labels).mean())


class Adam:
    """Adam (Kingma and Ba) over one flat float32 vector, as TensorFlow's
    AdamOptimizer with its defaults."""

    def __init__(self, size, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = np.zeros(size, dtype=np.float32)
        self.v = np.zeros(size, dtype=np.float32)
        self.t = 0

    def apply(self, params, grad, lr=None):
        """One step; lr, when given, replaces the learning rate for it."""
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        lr_t = (self.lr if lr is None else lr) * np.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        params -= (lr_t * self.m / (np.sqrt(self.v) + self.eps)).astype(np.float32)


class MLP:
    """784 → hidden (ReLU) → 10, its parameters one flat float32 vector so
    that they can be split into parameter-server shards."""

    def __init__(self, hidden, inputs=784, classes=10):
        self.shapes = [("hid_w", (inputs, hidden)), ("hid_b", (hidden,)),
                       ("sm_w", (hidden, classes)), ("sm_b", (classes,))]
        self.size = sum(int(np.prod(s)) for _, s in self.shapes)

    def init(self, seed):
        """Initial parameters: truncated-normal-like weights with stddev
        1/sqrt(fan in), zero biases (as the TF example)."""
        rng = np.random.RandomState(seed)
        parts = []
        for name, shape in self.shapes:
            if name.endswith("_w"):
                w = rng.normal(0.0, 1.0 / np.sqrt(shape[0]), size=shape)
                parts.append(np.clip(w, -2.0 / np.sqrt(shape[0]), 2.0 / np.sqrt(shape[0])).ravel())
            else:
                parts.append(np.zeros(shape).ravel())
        return np.concatenate(parts).astype(np.float32)

    def unpack(self, flat):
        out, off = {}, 0
        for name, shape in self.shapes:
            n = int(np.prod(shape))
            out[name] = flat[off:off + n].reshape(shape)
            off += n
        return out

    def logits(self, flat, x):
        p = self.unpack(flat)
        h = np.maximum(x @ p["hid_w"] + p["hid_b"], 0.0)
        return h @ p["sm_w"] + p["sm_b"]

    def loss_and_grad(self, flat, x, y):
        p = self.unpack(flat)
        pre = x @ p["hid_w"] + p["hid_b"]
        h = np.maximum(pre, 0.0)
        logits = h @ p["sm_w"] + p["sm_b"]
        loss, prob = softmax_cross_entropy(logits, y)
        n = x.shape[0]
        d = prob
        d[np.arange(n), y] -= 1.0
        d /= n
        g_sm_w = h.T @ d
        g_sm_b = d.sum(axis=0)
        dh = (d @ p["sm_w"].T) * (pre > 0)
        g_hid_w = x.T @ dh
        g_hid_b = dh.sum(axis=0)
        grad = np.concatenate([g_hid_w.ravel(), g_hid_b.ravel(), g_sm_w.ravel(), g_sm_b.ravel()])
        return loss, grad.astype(np.float32)


def save_outputs(train_url, arrays, metrics, log=print):
    """Writes model.npz (the arrays) and metrics.json to train_url."""
    if not train_url:
        return
    remote = train_url.startswith("s3://") or train_url.startswith("obs://")
    out = tempfile.mkdtemp(prefix="mnist-out-") if remote else train_url
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, "model.npz"), **arrays)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
        f.write("\n")
    if remote:
        import moxing as mox

        mox.file.copy_parallel(out, train_url)
        shutil.rmtree(out, ignore_errors=True)
    log("saved model.npz and metrics.json to %s" % train_url)


def default_url(flag_value, env):
    """A URL flag, else the platform's environment variable."""
    return flag_value if flag_value else os.environ.get(env, "")
