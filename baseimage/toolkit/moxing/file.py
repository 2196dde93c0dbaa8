"""mox.file: file operations on s3:// and obs:// URLs and on local paths.

The subset of ModelArts' moxing.file that training scripts use:
copy_parallel, copy, exists, is_directory, list_directory, make_dirs, remove,
read, write, get_size, rename and File. Object-store access comes from the
job's environment (see malocal_toolkit.s3).
"""

import concurrent.futures
import io
import os
import shutil
import tempfile

from malocal_toolkit import s3

__all__ = [
    "File", "copy", "copy_parallel", "exists", "get_size", "is_directory",
    "list_directory", "make_dirs", "read", "remove", "rename", "write",
]


def _client():
    return s3.Client()


def _remote(url):
    """(bucket, key) for a remote URL, None for a local path."""
    if s3.is_remote(url):
        return s3.parse_url(url)
    return None


def _dir_prefix(key):
    return key if key == "" or key.endswith("/") else key + "/"


def _join(url, rel):
    if not rel:
        return url
    return url.rstrip("/") + "/" + rel if s3.is_remote(url) else os.path.join(url, rel)


def _has_children(client, bucket, key):
    for _ in client.list_objects(bucket, _dir_prefix(key)):
        return True
    return False


def exists(url):
    """True if url names a file or a directory."""
    r = _remote(url)
    if r is None:
        return os.path.exists(url)
    bucket, key = r
    c = _client()
    if key and not key.endswith("/") and c.head_object(bucket, key) is not None:
        return True
    try:
        children = _has_children(c, bucket, key)
        return children or key == ""  # a bucket that lists is a directory
    except s3.S3Error as e:
        if e.status == 404:
            return False
        raise


def is_directory(url):
    """True if url is a directory (a prefix with objects under it, or a
    directory marker)."""
    r = _remote(url)
    if r is None:
        return os.path.isdir(url)
    bucket, key = r
    try:
        children = _has_children(_client(), bucket, key)
        return children or key == ""  # a bucket that lists is a directory
    except s3.S3Error as e:
        if e.status == 404:
            return False
        raise


def list_directory(url, recursive=False):
    """Names under the directory url, sorted. Not recursive: the direct
    children (files and directories). Recursive: every file and directory
    below, as paths relative to url."""
    r = _remote(url)
    if r is None:
        if not os.path.isdir(url):
            raise NotADirectoryError("not a directory: %s" % url)
        if not recursive:
            return sorted(os.listdir(url))
        out = []
        for root, dirs, files in os.walk(url):
            rel = os.path.relpath(root, url)
            for n in dirs + files:
                out.append(n if rel == "." else os.path.join(rel, n))
        return sorted(out)
    bucket, key = r
    prefix = _dir_prefix(key)
    c = _client()
    names = set()
    if recursive:
        for kind, k, _ in c.list_objects(bucket, prefix):
            rel = k[len(prefix):].rstrip("/")
            if not rel:
                continue
            parts = rel.split("/")
            for i in range(1, len(parts) + 1):
                names.add("/".join(parts[:i]))
    else:
        for kind, k, _ in c.list_objects(bucket, prefix, delimiter="/"):
            rel = k[len(prefix):].rstrip("/")
            if rel:
                names.add(rel)
    return sorted(names)


def make_dirs(url):
    """Create the directory url and its parents (a directory marker object
    on the object store)."""
    r = _remote(url)
    if r is None:
        os.makedirs(url, exist_ok=True)
        return
    bucket, key = r
    if key:
        _client().put_object(bucket, _dir_prefix(key), b"")


def remove(url, recursive=False):
    """Remove the file url; with recursive=True, a directory and everything
    under it."""
    r = _remote(url)
    if r is None:
        if os.path.isdir(url) and not os.path.islink(url):
            if not recursive:
                raise IsADirectoryError("%s is a directory: pass recursive=True" % url)
            shutil.rmtree(url)
        else:
            os.remove(url)
        return
    bucket, key = r
    c = _client()
    if key and not key.endswith("/") and c.head_object(bucket, key) is not None:
        c.delete_object(bucket, key)
        if not recursive:
            return
    keys = [k for k, _ in c.list_keys(bucket, _dir_prefix(key))]
    if not keys:
        if recursive and key and not key.endswith("/"):
            return
        raise FileNotFoundError("no such file or directory: %s" % url)
    if not recursive:
        raise IsADirectoryError("%s is a directory: pass recursive=True" % url)
    for k in keys:
        c.delete_object(bucket, k)


def get_size(url, recursive=False):
    """Size in bytes of a file; with recursive=True, of everything under a
    directory."""
    r = _remote(url)
    if r is None:
        if not recursive or not os.path.isdir(url):
            return os.path.getsize(url)
        total = 0
        for root, _dirs, files in os.walk(url):
            for n in files:
                total += os.path.getsize(os.path.join(root, n))
        return total
    bucket, key = r
    c = _client()
    if not recursive:
        h = c.head_object(bucket, key)
        if h is None:
            raise FileNotFoundError("no such file: %s" % url)
        return int(h.get("Content-Length", "0"))
    return sum(size for _, size in c.list_keys(bucket, _dir_prefix(key)))


def copy(src_url, dst_url):
    """Copy one file; either side may be local or remote."""
    rs, rd = _remote(src_url), _remote(dst_url)
    c = _client() if rs or rd else None
    if rs is None and rd is None:
        parent = os.path.dirname(dst_url)
        if parent:
            os.makedirs(parent, exist_ok=True)
        shutil.copyfile(src_url, dst_url)
    elif rs is not None and rd is None:
        parent = os.path.dirname(dst_url)
        if parent:
            os.makedirs(parent, exist_ok=True)
        c.download_file(rs[0], rs[1], dst_url)
    elif rs is None:
        if os.path.isdir(src_url):
            raise IsADirectoryError("%s is a directory: use copy_parallel" % src_url)
        c.upload_file(src_url, rd[0], rd[1])
    else:
        fd, tmp = tempfile.mkstemp(prefix="mox-copy-")
        os.close(fd)
        try:
            c.download_file(rs[0], rs[1], tmp)
            c.upload_file(tmp, rd[0], rd[1])
        finally:
            os.unlink(tmp)


def _files_under(url):
    r = _remote(url)
    if r is None:
        out = []
        for root, _dirs, files in os.walk(url):
            for n in files:
                out.append(os.path.relpath(os.path.join(root, n), url).replace(os.sep, "/"))
        return sorted(out)
    bucket, key = r
    prefix = _dir_prefix(key)
    return sorted(k[len(prefix):] for k, _ in _client().list_keys(bucket, prefix)
                  if not k.endswith("/") and len(k) > len(prefix))


def copy_parallel(src_url, dst_url, file_list=None, threads=16,
                  is_processing=True, use_queue=True):
    """Copy the directory src_url to dst_url, files in parallel.

    file_list, when given, limits the copy to those paths relative to
    src_url. is_processing and use_queue are accepted for compatibility."""
    del is_processing, use_queue
    rels = list(file_list) if file_list is not None else _files_under(src_url)
    local_dst = _remote(dst_url) is None
    for rel in rels:
        if rel.startswith("/") or ".." in rel.split("/"):
            raise ValueError("refusing path %r: outside %s" % (rel, dst_url))
    if local_dst:
        os.makedirs(dst_url, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = [pool.submit(copy, _join(src_url, rel), _join(dst_url, rel)) for rel in rels]
        for fut in futures:
            fut.result()


def rename(src_url, dst_url):
    """Move a file (copy, then remove the source)."""
    if _remote(src_url) is None and _remote(dst_url) is None:
        os.replace(src_url, dst_url)
        return
    copy(src_url, dst_url)
    remove(src_url)


def read(url, binary=False):
    """The content of a file, as str (utf-8) or, with binary=True, bytes."""
    r = _remote(url)
    if r is None:
        with open(url, "rb") as f:
            data = f.read()
    else:
        data = _client().get_object(r[0], r[1])
    return data if binary else data.decode("utf-8")


def write(url, content, binary=False):
    """Write content (str, or bytes with binary=True) to the file url."""
    data = content if binary or isinstance(content, bytes) else content.encode("utf-8")
    r = _remote(url)
    if r is None:
        parent = os.path.dirname(url)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(url, "wb") as f:
            f.write(data)
        return
    _client().put_object(r[0], r[1], data)


class File(io.IOBase):
    """A file object on a URL: mox.file.File(url, mode). Remote files are
    read whole on open and written on close."""

    def __new__(cls, url, mode="r"):
        if _remote(url) is None:
            return open(url, mode)
        return super().__new__(cls)

    def __init__(self, url, mode="r"):
        super().__init__()
        self._url = url
        self._mode = mode
        self._binary = "b" in mode
        self._writing = any(m in mode for m in "wax")
        if self._writing:
            self._buf = io.BytesIO()
            if "a" in mode and exists(url):
                self._buf.write(read(url, binary=True))
        else:
            self._buf = io.BytesIO(read(url, binary=True))
        self._text = None if self._binary else io.TextIOWrapper(
            self._buf, encoding="utf-8", write_through=True)

    def _f(self):
        return self._buf if self._binary else self._text

    def read(self, size=-1):
        return self._f().read(size)

    def readline(self, size=-1):
        return self._f().readline(size)

    def readlines(self, hint=-1):
        return self._f().readlines(hint)

    def __iter__(self):
        return iter(self._f())

    def write(self, data):
        if not self._writing:
            raise io.UnsupportedOperation("not writable")
        return self._f().write(data)

    def readable(self):
        return not self._writing

    def writable(self):
        return self._writing

    def close(self):
        if self.closed:
            return
        try:
            if self._writing:
                if self._text is not None:
                    self._text.flush()
                write(self._url, self._buf.getvalue(), binary=True)
        finally:
            if self._text is not None:
                self._text.detach()
            super().close()
