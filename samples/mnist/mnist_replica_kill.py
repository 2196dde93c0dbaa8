"""Distributed MNIST training with parameter servers and workers: a numpy
port of the ModelArts guide's mnist_replica_kill.py (TensorFlow's
mnist_replica.py with a "done" token that ends the parameter servers).

The job has N >= 2 tasks. As in the original, the task list comes from the
platform's environment: DLS_TASK_INDEX, DLS_TASK_NUMBER and
BATCH_CUSTOM{k}_HOSTS=host:port for k in 0..N-1. The first N/2 tasks
(N//2) are parameter servers, the rest workers, with worker index
DLS_TASK_INDEX - N//2; worker 0 is the chief.

- Each parameter server holds one shard of the model (one slice of its
  flat parameter vector) and applies Adam to it. Shard 0 also counts the
  global step.
- A worker loops: pull the parameters from every shard, compute the
  gradient of a mini-batch, push each shard its slice (TCP, python's
  standard library), until the global step reaches --train_steps.
  Asynchronous by default; with --sync_replicas every shard averages
  --replicas_to_aggregate gradients of one step before applying them, and
  drops stale ones.
- A worker that is done puts a "done" token to every parameter server; a
  parameter server exits 0 once it holds one from every worker.
- The chief prints the validation cross-entropy and the test accuracy
  ("test accuracy: 0.XXXX") and saves model.npz and metrics.json to
  --train_url.

Model and optimizer as the original: one hidden layer of 100 units, batch
100, Adam. What differs from the TensorFlow original, and why:

- Staleness-aware learning rate (asynchronous mode). With W asynchronous
  workers a gradient reaches a shard after, on average, W-1 updates by the
  others: it was computed on parameters that are no longer there. Adam
  moves every coordinate by about the learning rate whatever the gradient's
  size, so at the original's 0.01 the stale steps overshoot: the guide's 4
  nodes (2 workers) reached 0.77 test accuracy on Fashion-MNIST where one
  worker reached 0.81 (measured on the same steps; a simulation with
  exactly one step of staleness gives the same loss). Each shard now
  measures a gradient's staleness (its own updates since the worker pulled
  it; every shard separately, since the two shards are read and updated
  independently) and applies it with learning rate / (1 + staleness), as in
  staleness-aware async SGD (Zhang et al., 2016). One worker, and
  --sync_replicas, see no staleness: the rate is not divided.
- The learning rate falls linearly from --learning_rate (0.01, the
  original's) to 0 at --train_steps, each shard by its own step count.
  At a constant rate the model the chief reads is Adam's last noisy step,
  and asynchronous runs scattered: the guide's 4-node job ended between
  0.81 and 0.85 test accuracy from one run to the next with the same
  seed. With the decay, 0.853 to 0.857 over eight runs, on a quiet machine
  and beside four busy loops alike.
- 1000 global steps by default, not 200: the original was tuned for MNIST;
  Fashion-MNIST is harder, and 200 steps leave one worker at 0.81.
- The output dir: --train_url, else the job's DLS_TRAIN_URL, so that the
  guide's run command needs nothing appended.
"""

import argparse
import concurrent.futures
import ipaddress
import os
import socket
import socketserver
import struct
import sys
import threading
import time

import numpy as np

import input_data
import mnist_util

# Wire format: every message is a 20-byte header, then payload bytes.
#   op (4 bytes) | arg (signed 64 bit) | payload length (unsigned 64 bit)
HEADER = struct.Struct("!4sqQ")
OP_PULL = b"PULL"  # -> arg: global step, payload: the shard's parameters
OP_PUSH = b"PUSH"  # arg: the step the gradient was computed at, payload: the gradient slice -> arg: global step
OP_DONE = b"DONE"  # arg: worker index -> arg: done tokens held
OP_HELO = b"HELO"  # arg: worker index -> arg: parameter server index, payload: MAGIC
OP_OK = b"OKAY"
OP_ERR = b"ERR!"
MAX_PAYLOAD = 1 << 30
MAGIC = b"mnist_replica_kill/1"


def log(msg):
    print("%.3f: %s" % (time.time(), msg), flush=True)


def recv_exact(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("connection closed")
        got += k
    return bytes(buf)


def send_msg(sock, op, arg=0, payload=b""):
    sock.sendall(HEADER.pack(op, arg, len(payload)) + payload)


def recv_msg(sock):
    op, arg, n = HEADER.unpack(recv_exact(sock, HEADER.size))
    if n > MAX_PAYLOAD:
        raise ValueError("payload of %d bytes" % n)
    return op, arg, recv_exact(sock, n) if n else b""


def cluster_from_env():
    """(task index, task count, ["host:port", ...]) from the platform's
    environment, as the original reads it."""
    try:
        index = int(os.environ["DLS_TASK_INDEX"])
        number = int(os.environ["DLS_TASK_NUMBER"])
    except KeyError as e:
        raise SystemExit("%s is not set: run this as a malocal (or ModelArts) job, or set DLS_TASK_INDEX, "
                         "DLS_TASK_NUMBER and BATCH_CUSTOM{k}_HOSTS" % e.args[0])
    hosts = []
    for k in range(number):
        h = os.environ.get("BATCH_CUSTOM%d_HOSTS" % k, "")
        if not h or ":" not in h:
            raise SystemExit("BATCH_CUSTOM%d_HOSTS is %r: want host:port" % (k, h))
        hosts.append(h)
    if number < 2:
        raise SystemExit("mnist_replica_kill needs at least 2 tasks (parameter servers and workers), got %d" % number)
    if not 0 <= index < number:
        raise SystemExit("DLS_TASK_INDEX %d is not in 0..%d" % (index, number - 1))
    return index, number, hosts


def split_host_port(hp):
    host, _, port = hp.rpartition(":")
    return host.strip("[]"), int(port)


def shard_bounds(size, num_ps):
    """[(start, end)] of each shard's slice of the flat parameters."""
    base, extra = divmod(size, num_ps)
    out, start = [], 0
    for i in range(num_ps):
        end = start + base + (1 if i < extra else 0)
        out.append((start, end))
        start = end
    return out


class Shard:
    """One parameter server's slice of the model, its optimizer, the step
    counter, and the done tokens."""

    def __init__(self, params, args, num_workers):
        self.params = params
        self.adam = mnist_util.Adam(params.size, lr=args.learning_rate)
        self.step = 0
        self.train_steps = args.train_steps
        self.sync = args.sync_replicas
        self.aggregate = args.replicas_to_aggregate or num_workers
        self.acc = np.zeros_like(params)
        self.acc_count = 0
        self.num_workers = num_workers
        self.done = set()
        self.staleness_sum = 0
        self.cond = threading.Condition()
        self.all_done = threading.Event()

    def lr(self):
        """The learning rate at this shard's step: linear decay to 0 at
        --train_steps."""
        return self.adam.lr * max(0.0, 1.0 - self.step / self.train_steps)

    def pull(self):
        with self.cond:
            return self.step, self.params.tobytes()

    def push(self, step, grad):
        with self.cond:
            if not self.sync:
                # step is this shard's step when the worker pulled it.
                staleness = max(0, self.step - step)
                self.staleness_sum += staleness
                self.adam.apply(self.params, grad, lr=self.lr() / (1 + staleness))
                self.step += 1
                return self.step
            # Synchronous: wait until this shard reaches the worker's step
            # (it may lag shard 0), drop a stale gradient, else aggregate.
            while self.step < step and not self.all_done.is_set():
                self.cond.wait(1.0)
            if step < self.step:
                return self.step
            self.acc += grad
            self.acc_count += 1
            if self.acc_count >= self.aggregate:
                self.adam.apply(self.params, self.acc / np.float32(self.acc_count), lr=self.lr())
                self.acc[:] = 0
                self.acc_count = 0
                self.step += 1
                self.cond.notify_all()
                return self.step
            # Wait for the other replicas of this step.
            while self.step <= step and not self.all_done.is_set():
                self.cond.wait(1.0)
            return self.step

    def put_done(self, worker):
        with self.cond:
            self.done.add(worker)
            if len(self.done) >= self.num_workers:
                self.all_done.set()
                self.cond.notify_all()
            return len(self.done)


class PSHandler(socketserver.BaseRequestHandler):
    def handle(self):
        shard = self.server.shard
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                op, arg, payload = recv_msg(sock)
            except (ConnectionError, OSError):
                return
            try:
                if op == OP_HELO:
                    send_msg(sock, OP_OK, self.server.ps_index, MAGIC)
                elif op == OP_PULL:
                    step, data = shard.pull()
                    send_msg(sock, OP_OK, step, data)
                elif op == OP_PUSH:
                    grad = np.frombuffer(payload, dtype=np.float32)
                    if grad.size != shard.params.size:
                        raise ValueError("gradient of %d values for a shard of %d" % (grad.size, shard.params.size))
                    send_msg(sock, OP_OK, shard.push(arg, grad))
                elif op == OP_DONE:
                    n = shard.put_done(arg)
                    log("parameter server %d: done token from worker %d (%d of %d)" % (
                        self.server.ps_index, arg, n, shard.num_workers))
                    send_msg(sock, OP_OK, n)
                else:
                    raise ValueError("unknown operation %r" % op)
            except (ConnectionError, OSError):
                return
            except Exception as e:  # a bad request: answer it, keep serving
                send_msg(sock, OP_ERR, 0, str(e).encode())


class PSServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def bind_host(host):
    """Listen on a loopback address when the task list names one (tests on
    one machine), else on every interface, as TF's servers do."""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    return ""


def listen(host, port, timeout=30):
    """The parameter server's listener; a port still held by a process that
    is ending is retried for a while."""
    deadline = time.time() + timeout
    while True:
        try:
            return PSServer((host, port), PSHandler)
        except OSError as e:
            if time.time() > deadline:
                raise
            log("cannot listen on port %d yet: %s" % (port, e))
            time.sleep(1)


def run_ps(args, ps_index, num_ps, num_workers, hosts):
    model = mnist_util.MLP(args.hidden_units)
    lo, hi = shard_bounds(model.size, num_ps)[ps_index]
    params = model.init(args.seed)[lo:hi].copy()
    shard = Shard(params, args, num_workers)
    host, port = split_host_port(hosts[ps_index])
    server = listen(bind_host(host), port)
    server.shard, server.ps_index = shard, ps_index
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    log("parameter server %d of %d: serving parameters [%d, %d) of %d on port %d (%s), waiting for %d worker(s)" % (
        ps_index, num_ps, lo, hi, model.size, port, "sync" if args.sync_replicas else "async", num_workers))
    shard.all_done.wait()
    # Let the last answers go out before the process ends.
    time.sleep(0.2)
    server.shutdown()
    server.server_close()
    log("parameter server %d: done tokens from all %d worker(s), %d updates applied, exiting" % (
        ps_index, num_workers, shard.step))
    if not args.sync_replicas and shard.step:
        log("parameter server %d: mean staleness of the gradients %.2f" % (ps_index, shard.staleness_sum / shard.step))
    return 0


class PSClient:
    """A worker's connection to one parameter server, retried until it is
    up (the job's containers start in any order) and has answered the
    handshake."""

    def __init__(self, ps_index, hostport, timeout):
        self.hostport = hostport
        host, port = split_host_port(hostport)
        deadline = time.time() + timeout
        last = None
        while True:
            sock = None
            try:
                sock = socket.create_connection((host, port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                send_msg(sock, OP_HELO, 0)
                op, arg, payload = recv_msg(sock)
                if op != OP_OK or payload != MAGIC or arg != ps_index:
                    raise ConnectionError("%s is not parameter server %d (answered %r %d %r)" % (hostport, ps_index, op, arg, payload[:40]))
                sock.settimeout(None)
                self.sock = sock
                return
            except (OSError, ValueError, struct.error) as e:
                last = e
                if sock is not None:
                    sock.close()
            if time.time() > deadline:
                raise ConnectionError("parameter server %s unreachable for %ds: %s" % (hostport, timeout, last))
            time.sleep(0.2)

    def call(self, op, arg=0, payload=b""):
        send_msg(self.sock, op, arg, payload)
        rop, rarg, rpayload = recv_msg(self.sock)
        if rop != OP_OK:
            raise RuntimeError("parameter server %s: %s" % (self.hostport, rpayload.decode(errors="replace")))
        return rarg, rpayload

    def close(self):
        self.sock.close()


def run_worker(args, worker, num_ps, num_workers, hosts):
    is_chief = worker == 0
    mnist = input_data.read_data_sets(args.data_url, seed=args.seed + 1 + worker)
    log("worker %d: data: %d training, %d validation, %d test examples" % (
        worker, mnist.train.num_examples, mnist.validation.num_examples, mnist.test.num_examples))
    model = mnist_util.MLP(args.hidden_units)
    bounds = shard_bounds(model.size, num_ps)
    ps = [PSClient(i, hosts[i], args.connect_timeout) for i in range(num_ps)]
    log("worker %d: connected to %d parameter server(s)%s" % (worker, num_ps, " (chief)" if is_chief else ""))

    # One thread per parameter server: pulls and pushes go to all shards at
    # once (with --sync_replicas, one wait per step rather than one per shard).
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=num_ps)

    def pull():
        """The global step (shard 0's), each shard's own step, and the
        parameters."""
        flat = np.empty(model.size, dtype=np.float32)
        answers = list(pool.map(lambda c: c.call(OP_PULL), ps))
        for i, (_, data) in enumerate(answers):
            lo, hi = bounds[i]
            flat[lo:hi] = np.frombuffer(data, dtype=np.float32)
        return answers[0][0], [a[0] for a in answers], flat

    def push(steps, grad):
        """Each shard gets its slice and the step it was pulled at."""
        answers = list(pool.map(lambda i: ps[i].call(OP_PUSH, steps[i], grad[bounds[i][0]:bounds[i][1]].tobytes()), range(num_ps)))
        return answers[0][0]

    start = time.time()
    log("Training begins @ %f" % start)
    local_step = 0
    step, steps, flat = pull()
    while step < args.train_steps:
        x, y = mnist.train.next_batch(args.batch_size)
        loss, grad = model.loss_and_grad(flat, x, y)
        new_step = push(steps, grad)
        local_step += 1
        log("Worker %d: training step %d done (global step: %d), cross entropy %.4f" % (worker, local_step, new_step, loss))
        step, steps, flat = pull()
    end = time.time()
    log("Training ends @ %f" % end)
    log("Training elapsed time: %f s" % (end - start))

    rc = 0
    if is_chief:
        val_logits = model.logits(flat, mnist.validation.images)
        val_ce, _ = mnist_util.softmax_cross_entropy(val_logits, mnist.validation.labels)
        val_acc = mnist_util.accuracy(val_logits, mnist.validation.labels)
        test_acc = mnist_util.accuracy(model.logits(flat, mnist.test.images), mnist.test.labels)
        print("After %d training step(s), validation cross entropy = %g, validation accuracy = %.4f" % (
            step, val_ce, val_acc), flush=True)
        try:
            mnist_util.save_outputs(args.train_url, model.unpack(flat), {
                "example": "mnist_replica_kill", "global_step": step, "local_steps": local_step,
                "parameter_servers": num_ps, "workers": num_workers, "sync_replicas": args.sync_replicas,
                "hidden_units": args.hidden_units, "batch_size": args.batch_size,
                "learning_rate": args.learning_rate, "validation_cross_entropy": val_ce,
                "validation_accuracy": val_acc, "test_accuracy": test_acc,
                "training_seconds": round(end - start, 3),
            }, log=log)
        except Exception as e:  # still release the parameter servers
            log("worker %d: saving the model to %s failed: %s" % (worker, args.train_url, e))
            rc = 1
        print("test accuracy: %.4f" % test_acc, flush=True)

    for i, c in enumerate(ps):
        n, _ = c.call(OP_DONE, worker)
        log("worker %d: done token put to parameter server %d (it holds %d of %d)" % (worker, i, n, num_workers))
        c.close()
    pool.shutdown()
    return rc


def parse_args(argv):
    p = argparse.ArgumentParser(description="Distributed MNIST training: parameter servers and workers over TCP.")
    p.add_argument("--data_url", default="", help="directory or s3:// URL of the idx files (default $DLS_DATA_URL)")
    p.add_argument("--train_url", default="", help="where the chief saves model.npz and metrics.json (default $DLS_TRAIN_URL)")
    p.add_argument("--hidden_units", type=int, default=100, help="number of units in the hidden layer")
    p.add_argument("--train_steps", type=int, default=1000, help="number of (global) training steps to perform")
    p.add_argument("--batch_size", type=int, default=100, help="training batch size")
    p.add_argument("--learning_rate", type=float, default=0.01,
                   help="Adam's initial learning rate, falling linearly to 0 at --train_steps "
                        "(asynchronous: divided by 1 + the gradient's staleness)")
    p.add_argument("--sync_replicas", action="store_true", help="aggregate the workers' gradients before applying them")
    p.add_argument("--replicas_to_aggregate", type=int, default=0,
                   help="gradients aggregated per step with --sync_replicas (default: the number of workers)")
    p.add_argument("--connect_timeout", type=int, default=300, help="seconds a worker retries reaching a parameter server")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial parameters and the batch order")
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print("ignoring unknown arguments: %s" % " ".join(unknown), flush=True)
    args.data_url = mnist_util.default_url(args.data_url, "DLS_DATA_URL")
    args.train_url = mnist_util.default_url(args.train_url, "DLS_TRAIN_URL")
    if args.train_steps <= 0 or args.batch_size <= 0 or args.hidden_units <= 0:
        p.error("--train_steps, --batch_size and --hidden_units must be positive")
    return args, p


def main(argv):
    args, p = parse_args(argv)
    index, number, hosts = cluster_from_env()
    num_ps = number // 2
    num_workers = number - num_ps
    if args.replicas_to_aggregate < 0 or args.replicas_to_aggregate > num_workers:
        p.error("--replicas_to_aggregate %d: want 1..%d" % (args.replicas_to_aggregate, num_workers))
    ps_hosts, worker_hosts = hosts[:num_ps], hosts[num_ps:]
    log("task %d of %d: parameter servers %s, workers %s" % (index, number, ",".join(ps_hosts), ",".join(worker_hosts)))
    if index < num_ps:
        return run_ps(args, index, num_ps, num_workers, hosts)
    if not args.data_url:
        p.error("--data_url (or DLS_DATA_URL) is required")
    return run_worker(args, index - num_ps, num_ps, num_workers, hosts)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
