"""Download an object-store directory into a local directory, in parallel.

    python3 -m malocal_toolkit.download s3://bucket/code/dir/ /home/work/user-job-dir/dir

Every key under the prefix is checked before anything is written: a key that
would land outside the target directory (an absolute path, a `..` component,
a NUL byte) makes the whole download fail. Exit status 0 on success, 1 on any
error, with the reason on stderr.
"""

import concurrent.futures
import os
import sys

from malocal_toolkit import s3


class UnsafeKey(Exception):
    """A key that would be written outside the target directory."""


def local_path(target, rel):
    """Return the path under target for the relative key rel, or raise
    UnsafeKey when it would not stay inside target."""
    if not rel or "\x00" in rel or rel.startswith("/"):
        raise UnsafeKey("refusing key %r: not a relative path inside the target dir" % rel)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UnsafeKey("refusing key %r: it would land outside the target dir" % rel)
    path = os.path.join(target, *parts)
    root = os.path.abspath(target)
    if os.path.commonpath([root, os.path.abspath(path)]) != root:
        raise UnsafeKey("refusing key %r: it would land outside the target dir" % rel)
    return path


def plan(keys, prefix, target):
    """Map listed (key, size) pairs to (key, local path, is_dir) entries,
    refusing unsafe keys. Raises UnsafeKey before anything is written."""
    out = []
    for key, _size in keys:
        if not key.startswith(prefix):
            raise UnsafeKey("refusing key %r: not under prefix %r" % (key, prefix))
        rel = key[len(prefix):]
        if rel == "":
            continue  # the directory marker of the prefix itself
        is_dir = rel.endswith("/")
        out.append((key, local_path(target, rel.rstrip("/") if is_dir else rel), is_dir))
    return out


def _check_inside(target_real, path):
    """Refuse a path whose real parent escapes target (a symlink already in
    the target dir pointing elsewhere)."""
    parent = os.path.realpath(os.path.dirname(path))
    if os.path.commonpath([target_real, parent]) != target_real:
        raise UnsafeKey("refusing %r: its directory resolves outside the target dir" % path)
    if os.path.islink(path):
        raise UnsafeKey("refusing %r: it is a symbolic link" % path)


def download_dir(client, url, target, workers=8, log=None):
    """Download every object under url (s3:// or obs://, a directory) into
    target. Returns the number of files written."""
    bucket, prefix = s3.parse_url(url)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    keys = client.list_keys(bucket, prefix)
    if not keys:
        raise s3.S3Error("nothing to download: %s is empty or does not exist" % url)
    entries = plan(keys, prefix, target)
    os.makedirs(target, exist_ok=True)
    target_real = os.path.realpath(target)
    files = []
    for key, path, is_dir in entries:
        if is_dir:
            os.makedirs(path, exist_ok=True)
            _check_inside(target_real, os.path.join(path, "x"))
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _check_inside(target_real, path)
            files.append((key, path))

    def fetch(item):
        key, path = item
        client.download_file(bucket, key, path)
        return key

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(fetch, f) for f in files]
        try:
            for fut in concurrent.futures.as_completed(futures):
                key = fut.result()
                if log:
                    log("downloaded %s" % key)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return len(files)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python3 -m malocal_toolkit.download s3://bucket/dir/ TARGET_DIR",
              file=sys.stderr)
        return 2
    url, target = argv
    workers = int(os.environ.get("MALOCAL_DOWNLOAD_WORKERS", "8") or 8)
    try:
        client = s3.Client()
        n = download_dir(client, url, target, workers=workers)
    except (s3.S3Error, UnsafeKey, ValueError, OSError) as e:
        print("download of %s failed: %s" % (url, e), file=sys.stderr)
        return 1
    print("downloaded %d files from %s to %s" % (n, url, target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
