"""Distributed MNIST training with PyTorch: a small CNN trained with
torch.distributed's DistributedDataParallel on the N containers of a job,
the platform's way of bringing your own compute engine.

The cluster comes from the platform's environment, as the guide's other
examples read it:
- rank DLS_TASK_INDEX, world size DLS_TASK_NUMBER;
- the rendezvous at BATCH_CUSTOM0_HOSTS (task 0's host:port, the job's
  port): task 0 runs torch.distributed's TCP store there, every task
  joins it (init_method tcp://HOST:PORT).
Run by `python3 -m torch.distributed.run` (torchrun) instead, it takes
RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT from that launcher (Debian's
torch 1.13 launcher needs `--redirects 1 --tee 1` under Python 3.11).

By default it trains 2 epochs with Adam, the learning rate falling
linearly from --learning_rate to 0 over the run: about 0.89 test accuracy
on Fashion-MNIST on 2 tasks (1 epoch at a constant rate gives about 0.87).

Backend gloo on CPU, nccl when CUDA is there (one GPU per task). Each task
reads its part of the training set through a DistributedSampler;
DistributedDataParallel averages the gradients of every step (all-reduce),
so all tasks hold the same model. Task 0 prints the test accuracy ("test
accuracy: 0.XXXX") and saves model.pt and metrics.json to --train_url
(default $DLS_TRAIN_URL; a directory, or s3:// / obs:// through mox.file).

Data: --data_url, a directory of the four idx files (the guide's layout:
/home/work/user-job-dir/new/mnist_data, downloaded with the code dir) or an
s3:// URL copied to /cache first with mox.file.
"""

import argparse
import datetime
import json
import os
import shutil
import socket
import sys
import tempfile
import time

import numpy as np

import input_data


def log(msg):
    print("%.3f: %s" % (time.time(), msg), flush=True)


def cluster_from_env(env=None):
    """(rank, world size, rendezvous host, port, source) from the
    platform's environment, or from torchrun's."""
    env = os.environ if env is None else env
    if "DLS_TASK_INDEX" in env or "DLS_TASK_NUMBER" in env:
        try:
            rank = int(env["DLS_TASK_INDEX"])
            world = int(env["DLS_TASK_NUMBER"])
        except KeyError as e:
            raise SystemExit("%s is not set: the platform sets DLS_TASK_INDEX and DLS_TASK_NUMBER together" % e.args[0])
        except ValueError as e:
            raise SystemExit("DLS_TASK_INDEX and DLS_TASK_NUMBER must be integers: %s" % e)
        hp = env.get("BATCH_CUSTOM0_HOSTS", "")
        host, _, port = hp.rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit("BATCH_CUSTOM0_HOSTS is %r: want host:port (task 0's address, the rendezvous)" % hp)
        source = "BATCH_CUSTOM0_HOSTS"
    elif "RANK" in env and "WORLD_SIZE" in env:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        host, port = env.get("MASTER_ADDR", "127.0.0.1"), env.get("MASTER_PORT", "29500")
        source = "MASTER_ADDR"
    else:
        raise SystemExit("no cluster in the environment: run this as a malocal (or ModelArts) job, which sets "
                         "DLS_TASK_INDEX, DLS_TASK_NUMBER and BATCH_CUSTOM0_HOSTS, or under torchrun")
    if world < 1 or not 0 <= rank < world:
        raise SystemExit("rank %d of world size %d: want 0 <= rank < world size" % (rank, world))
    return rank, world, host.strip("[]"), int(port), source


def load_data(data_url, validation_size=5000):
    """(train x, train y, test x, test y) as float32 images in [0, 1],
    shaped (n, 1, 28, 28), and int64 labels."""
    ds = input_data.read_data_sets(data_url, validation_size=validation_size)

    def images(d):
        return d.images.reshape(-1, 1, 28, 28).astype(np.float32)

    return (images(ds.train), ds.train.labels.astype(np.int64),
            images(ds.test), ds.test.labels.astype(np.int64))


def build_model(nn):
    """The small CNN: two 5x5 convolutions (16 and 32 channels) with max
    pooling, one hidden layer of 128 units, 10 classes."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def save_outputs(train_url, files, log=log):
    """Writes files ({name: writer(path)}) to train_url."""
    if not train_url:
        return
    remote = train_url.startswith("s3://") or train_url.startswith("obs://")
    out = tempfile.mkdtemp(prefix="mnist-ddp-out-") if remote else train_url
    os.makedirs(out, exist_ok=True)
    for name, write in files.items():
        write(os.path.join(out, name))
    if remote:
        import moxing as mox

        mox.file.copy_parallel(out, train_url)
        shutil.rmtree(out, ignore_errors=True)
    log("saved %s to %s" % (" and ".join(sorted(files)), train_url))


def parse_args(argv):
    p = argparse.ArgumentParser(description="Distributed MNIST training with PyTorch DistributedDataParallel.")
    p.add_argument("--data_url", default="", help="directory or s3:// URL of the idx files (default $DLS_DATA_URL)")
    p.add_argument("--train_url", default="", help="where task 0 saves model.pt and metrics.json (default $DLS_TRAIN_URL)")
    p.add_argument("--epochs", type=int, default=2, help="passes over the training set")
    p.add_argument("--batch_size", type=int, default=32, help="batch size of each task")
    p.add_argument("--learning_rate", type=float, default=0.002, help="Adam learning rate at the start; it falls linearly to 0 over the run")
    p.add_argument("--max_steps", type=int, default=0, help="stop after this many steps of each task (0: the epochs decide)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of each task (default: $OMP_NUM_THREADS, else torch's)")
    p.add_argument("--timeout", type=int, default=300, help="seconds to wait for every task at the rendezvous")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial model and the data order")
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print("ignoring unknown arguments: %s" % " ".join(unknown), flush=True)
    args.data_url = args.data_url or os.environ.get("DLS_DATA_URL", "")
    args.train_url = args.train_url or os.environ.get("DLS_TRAIN_URL", "")
    if args.epochs <= 0 or args.batch_size <= 0 or args.learning_rate <= 0:
        p.error("--epochs, --batch_size and --learning_rate must be positive")
    if not args.data_url:
        p.error("--data_url (or DLS_DATA_URL) is required")
    return args


def main(argv):
    args = parse_args(argv)
    rank, world, host, port, source = cluster_from_env()

    import torch
    import torch.distributed as dist
    import torch.nn as nn
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    torch.manual_seed(args.seed)

    # Read the data before the rendezvous: the others wait at most --timeout.
    train_x, train_y, test_x, test_y = load_data(args.data_url)
    log("rank %d of %d: %d training, %d test examples on %s (%s)" % (
        rank, world, len(train_y), len(test_y), device, socket.gethostname()))

    url = "tcp://%s:%d" % (host, port)
    log("rank %d of %d: %s rendezvous at %s (%s), task 0 serves it" % (rank, world, backend, url, source))
    t0 = time.time()
    if source == "MASTER_ADDR":
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=args.timeout))
    else:
        dist.init_process_group(backend, init_method=url, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=args.timeout))
    log("rank %d of %d: joined the %s group at %s in %.2f s" % (rank, world, backend, url, time.time() - t0))

    model = build_model(nn).to(device)
    ddp = DistributedDataParallel(model, device_ids=[0] if cuda else None)
    opt = torch.optim.Adam(ddp.parameters(), lr=args.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    data = TensorDataset(torch.from_numpy(train_x), torch.from_numpy(train_y))
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler)
    # The learning rate falls linearly to 0 over the run.
    total = args.epochs * len(loader)
    if args.max_steps:
        total = min(total, args.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / max(1, total)))

    start = time.time()
    log("Training begins @ %f" % start)
    step = 0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        ddp.train()
        for x, y in loader:
            if args.max_steps and step >= args.max_steps:
                break
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = loss_fn(ddp(x), y)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0:
                log("rank %d: epoch %d step %d, cross entropy %.4f" % (rank, epoch + 1, step, loss.item()))
    end = time.time()
    log("Training ends @ %f" % end)
    log("Training elapsed time: %f s" % (end - start))

    rc = 0
    if rank == 0:
        model.eval()
        with torch.no_grad():
            correct = 0
            for i in range(0, len(test_y), 1000):
                x = torch.from_numpy(test_x[i:i + 1000]).to(device)
                correct += int((model(x).argmax(dim=1).cpu().numpy() == test_y[i:i + 1000]).sum())
        acc = correct / len(test_y)
        metrics = {
            "example": "mnist_ddp", "backend": backend, "world_size": world, "epochs": args.epochs,
            "steps": step, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "test_accuracy": acc, "training_seconds": round(end - start, 3),
        }

        def write_metrics(p):
            with open(p, "w") as f:
                json.dump(metrics, f, indent=2, sort_keys=True)
                f.write("\n")

        try:
            save_outputs(args.train_url, {
                "model.pt": lambda p: torch.save(model.state_dict(), p),
                "metrics.json": write_metrics,
            })
        except Exception as e:
            log("rank 0: saving the model to %s failed: %s" % (args.train_url, e))
            rc = 1
        print("test accuracy: %.4f" % acc, flush=True)
    # Every task waits for task 0's evaluation, then the group ends.
    dist.barrier()
    dist.destroy_process_group()
    log("rank %d of %d: done" % (rank, world))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
