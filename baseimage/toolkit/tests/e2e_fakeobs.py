"""Checks of the toolkit against a real S3 endpoint (fakeobs), run by the Go
test TestToolkitAgainstFakeobs with AWS_ENDPOINT_URL and keys set.

    python3 tests/e2e_fakeobs.py seed BUCKET LOCAL_CODE_DIR
    python3 tests/e2e_fakeobs.py moxing BUCKET SCRATCH_DIR
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import moxing as mox  # noqa: E402
from malocal_toolkit import s3  # noqa: E402
from tests.fakes3 import tree  # noqa: E402


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def seed(bucket, code_dir):
    c = s3.Client()
    c.create_bucket(bucket)
    mox.file.copy_parallel(code_dir, "s3://%s/x/new" % bucket)


def moxing(bucket, scratch):
    src = os.path.join(scratch, "src")
    files = {
        "a.txt": b"a\n",
        "dir with spaces/b ü 文件.txt": "non-ascii ✓\n".encode(),
        "nested/deeper/still/c.bin": bytes(range(256)) * 64,
    }
    for rel, data in files.items():
        p = os.path.join(src, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    want = {os.path.normpath(k): v for k, v in files.items()}

    mox.file.copy_parallel(src, "obs://%s/m/up" % bucket)
    mox.file.copy_parallel("s3://%s/m/up" % bucket, "s3://%s/m/copy" % bucket)
    mox.file.copy_parallel("obs://%s/m/copy/" % bucket, os.path.join(scratch, "down"))
    check(tree(os.path.join(scratch, "down")) == want, "copy_parallel round trip")

    check(mox.file.exists("s3://%s/m/up" % bucket), "exists dir")
    check(mox.file.exists("s3://%s/m/up/a.txt" % bucket), "exists file")
    check(not mox.file.exists("s3://%s/m/nope" % bucket), "not exists")
    check(not mox.file.exists("s3://no-such-bucket-x/m"), "no bucket")
    check(mox.file.is_directory("s3://%s/m/up/nested" % bucket), "is_directory")
    got = mox.file.list_directory("s3://%s/m/up" % bucket)
    check(got == ["a.txt", "dir with spaces", "nested"], "list_directory %r" % got)
    got = mox.file.list_directory("s3://%s/m/up/nested" % bucket, recursive=True)
    check(got == ["deeper", "deeper/still", "deeper/still/c.bin"], "recursive %r" % got)

    mox.file.make_dirs("s3://%s/m/made/deep" % bucket)
    check(mox.file.is_directory("s3://%s/m/made/deep" % bucket), "make_dirs")
    check(mox.file.list_directory("s3://%s/m/made" % bucket) == ["deep"], "made listed")

    mox.file.copy("s3://%s/m/up/a.txt" % bucket, "obs://%s/m/one.txt" % bucket)
    check(mox.file.read("s3://%s/m/one.txt" % bucket) == "a\n", "copy + read")
    mox.file.write("s3://%s/m/w.txt" % bucket, "ünï\n")
    check(mox.file.read("s3://%s/m/w.txt" % bucket) == "ünï\n", "write + read")
    check(mox.file.get_size("s3://%s/m/up/nested/deeper/still/c.bin" % bucket) == 256 * 64, "size")
    with mox.file.File("s3://%s/m/f.txt" % bucket, "w") as f:
        f.write("x\ny\n")
    with mox.file.File("s3://%s/m/f.txt" % bucket) as f:
        check(f.readlines() == ["x\n", "y\n"], "File")

    try:
        mox.file.remove("s3://%s/m/up" % bucket)
        check(False, "remove of a dir without recursive")
    except IsADirectoryError:
        pass
    mox.file.remove("s3://%s/m/one.txt" % bucket)
    check(not mox.file.exists("s3://%s/m/one.txt" % bucket), "remove file")
    mox.file.remove("s3://%s/m/up" % bucket, recursive=True)
    check(not mox.file.exists("s3://%s/m/up" % bucket), "remove recursive")
    check(mox.file.exists("s3://%s/m/copy/a.txt" % bucket), "sibling kept")
    print("moxing ok")


if __name__ == "__main__":
    {"seed": seed, "moxing": moxing}[sys.argv[1]](*sys.argv[2:])
