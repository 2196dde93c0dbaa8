"""An in-memory stand-in for malocal_toolkit.s3.Client, for unit tests."""

import os

from malocal_toolkit import s3


class FakeClient:
    def __init__(self, buckets=None):
        self.buckets = {b: dict(objs) for b, objs in (buckets or {}).items()}
        self.gets = []

    def _bucket(self, bucket):
        if bucket not in self.buckets:
            raise s3.S3Error("GET s3://%s/: HTTP 404 NoSuchBucket" % bucket,
                             status=404, code="NoSuchBucket")
        return self.buckets[bucket]

    def list_objects(self, bucket, prefix="", delimiter=None):
        objs = self._bucket(bucket)
        seen = set()
        for k in sorted(objs):
            if not k.startswith(prefix):
                continue
            if delimiter:
                i = k.find(delimiter, len(prefix))
                if i >= 0:
                    p = k[:i + len(delimiter)]
                    if p not in seen:
                        seen.add(p)
                        yield "prefix", p, 0
                    continue
            yield "key", k, len(objs[k])

    def list_keys(self, bucket, prefix=""):
        return [(k, n) for kind, k, n in self.list_objects(bucket, prefix) if kind == "key"]

    def head_object(self, bucket, key):
        objs = self.buckets.get(bucket, {})
        if key not in objs:
            return None
        return {"Content-Length": str(len(objs[key]))}

    def get_object(self, bucket, key):
        objs = self._bucket(bucket)
        if key not in objs:
            raise s3.S3Error("GET s3://%s/%s: HTTP 404 NoSuchKey" % (bucket, key),
                             status=404, code="NoSuchKey")
        self.gets.append(key)
        return objs[key]

    def download_file(self, bucket, key, path):
        data = self.get_object(bucket, key)
        with open(path, "wb") as f:
            f.write(data)

    def put_object(self, bucket, key, data=b"", content_type=None):
        self._bucket(bucket)[key] = bytes(data)

    def upload_file(self, path, bucket, key, content_type=None):
        with open(path, "rb") as f:
            self.put_object(bucket, key, f.read())

    def delete_object(self, bucket, key):
        self._bucket(bucket).pop(key, None)


def tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _dirs, files in os.walk(root):
        for n in files:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out
