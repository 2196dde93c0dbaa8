"""A small S3 client: AWS Signature Version 4, path-style, standard library only.

It talks to the object store the job's environment names:

  AWS_ENDPOINT_URL or S3_ENDPOINT   the endpoint (http://host:port; a bare
                                    host:port is taken as http)
  AWS_ACCESS_KEY_ID                 the access key
  AWS_SECRET_ACCESS_KEY             the secret key
  AWS_DEFAULT_REGION                the region (default us-east-1)

URLs are accepted as s3://bucket/key and obs://bucket/key.
"""

import datetime
import hashlib
import hmac
import http.client
import os
import socket
import time
import urllib.parse
import xml.etree.ElementTree as ET

UNRESERVED = "-_.~"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CHUNK = 1 << 20


class S3Error(Exception):
    """An error answered by the server, or a failure to reach it."""

    def __init__(self, message, status=0, code=""):
        super().__init__(message)
        self.status = status
        self.code = code


def parse_url(url):
    """Split s3://bucket/key or obs://bucket/key into (bucket, key)."""
    for scheme in ("s3://", "obs://"):
        if url.startswith(scheme):
            rest = url[len(scheme):]
            bucket, _, key = rest.partition("/")
            if not bucket:
                raise ValueError("no bucket in URL %r" % url)
            return bucket, key
    raise ValueError("not an s3:// or obs:// URL: %r" % url)


def is_remote(url):
    return isinstance(url, str) and (url.startswith("s3://") or url.startswith("obs://"))


def quote(s, safe=UNRESERVED):
    return urllib.parse.quote(s, safe=safe)


def canonical_query(params):
    pairs = sorted((quote(str(k)), quote(str(v))) for k, v in params.items())
    return "&".join("%s=%s" % kv for kv in pairs)


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, date, region, service="s3"):
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def sign(method, host, path, params, headers, payload_hash, access_key,
         secret_key, region, now):
    """Return the headers to add (x-amz-date, x-amz-content-sha256,
    authorization) for a request.

    path is the already-encoded request path; headers holds the other headers
    to sign (names in any case). now is a UTC datetime.
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    signed = {k.lower(): " ".join(str(v).strip().split()) for k, v in headers.items()}
    signed["host"] = host
    signed["x-amz-date"] = amz_date
    signed["x-amz-content-sha256"] = payload_hash
    names = sorted(signed)
    canonical_headers = "".join("%s:%s\n" % (n, signed[n]) for n in names)
    signed_headers = ";".join(names)
    canonical_request = "\n".join([
        method, path, canonical_query(params), canonical_headers,
        signed_headers, payload_hash])
    scope = "%s/%s/s3/aws4_request" % (date, region)
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    signature = hmac.new(signing_key(secret_key, date, region),
                         string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_hash,
        "Authorization": "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
        % (access_key, scope, signed_headers, signature),
    }


def _strip_ns(tag):
    return tag.rsplit("}", 1)[-1]


def _child(elem, name):
    for c in elem:
        if _strip_ns(c.tag) == name:
            return c
    return None


def _text(elem, name, default=""):
    c = _child(elem, name)
    if c is None or c.text is None:
        return default
    return c.text


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


class Client:
    """An S3 client for one endpoint and one set of keys."""

    def __init__(self, endpoint=None, access_key=None, secret_key=None,
                 region=None, timeout=60, retries=3):
        env = os.environ
        endpoint = endpoint or env.get("AWS_ENDPOINT_URL") or env.get("S3_ENDPOINT")
        if not endpoint:
            raise S3Error("no object store endpoint: set AWS_ENDPOINT_URL or S3_ENDPOINT")
        if "://" not in endpoint:
            endpoint = "http://" + endpoint
        u = urllib.parse.urlsplit(endpoint)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise S3Error("bad object store endpoint %r" % endpoint)
        self.scheme = u.scheme
        self.netloc = u.netloc
        self.base_path = u.path.rstrip("/")
        self.access_key = access_key if access_key is not None else env.get("AWS_ACCESS_KEY_ID", "")
        self.secret_key = secret_key if secret_key is not None else env.get("AWS_SECRET_ACCESS_KEY", "")
        self.region = region or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.timeout = timeout
        self.retries = retries

    # -- plumbing -------------------------------------------------------

    def _path(self, bucket, key=""):
        p = self.base_path + "/" + quote(bucket)
        if key:
            p += "/" + quote(key, safe=UNRESERVED + "/")
        return p

    def _conn(self):
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.netloc, timeout=self.timeout)
        return http.client.HTTPConnection(self.netloc, timeout=self.timeout)

    def request(self, method, bucket, key="", params=None, headers=None,
                body=None, body_path=None, payload_hash=None, sink=None,
                ok=(200, 204, 206)):
        """Send one signed request, retrying on connection errors and 5xx.

        body is bytes; body_path names a file to stream instead. sink, when
        given, is called with the response to consume its body (on success
        only); otherwise the body is read and returned. Returns
        (status, headers, data).
        """
        params = params or {}
        headers = dict(headers or {})
        if body is not None and body_path is not None:
            raise ValueError("body and body_path are exclusive")
        if payload_hash is None:
            if body_path is not None:
                payload_hash = file_sha256(body_path)
            else:
                payload_hash = hashlib.sha256(body or b"").hexdigest()
        path = self._path(bucket, key)
        url = path
        if params:
            url += "?" + canonical_query(params)
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.2 * (2 ** attempt), 5))
            now = datetime.datetime.now(datetime.timezone.utc)
            h = dict(headers)
            h["Host"] = self.netloc
            h.update(sign(method, self.netloc, path, params, headers, payload_hash,
                          self.access_key, self.secret_key, self.region, now))
            conn = self._conn()
            f = None
            try:
                if body_path is not None:
                    f = open(body_path, "rb")
                    h["Content-Length"] = str(os.fstat(f.fileno()).st_size)
                    conn.request(method, url, body=f, headers=h)
                else:
                    data = body if body is not None else b""
                    if method in ("PUT", "POST") or data:
                        h["Content-Length"] = str(len(data))
                    conn.request(method, url, body=data or None, headers=h)
                resp = conn.getresponse()
                if resp.status in ok:
                    if sink is not None:
                        sink(resp)
                        return resp.status, resp.headers, b""
                    return resp.status, resp.headers, resp.read()
                data = resp.read()
                err = self._error(method, bucket, key, resp.status, data)
                if resp.status >= 500:
                    last = err
                    continue
                raise err
            except (OSError, http.client.HTTPException, socket.timeout) as e:
                last = S3Error("%s %s: %s" % (method, self._describe(bucket, key), e))
            finally:
                if f is not None:
                    f.close()
                conn.close()
        raise last

    def _describe(self, bucket, key):
        return "s3://%s/%s" % (bucket, key)

    def _error(self, method, bucket, key, status, data):
        code, message = "", ""
        if data:
            try:
                root = ET.fromstring(data)
                code = _text(root, "Code")
                message = _text(root, "Message")
            except ET.ParseError:
                message = data[:200].decode("utf-8", "replace")
        text = "%s %s: HTTP %d" % (method, self._describe(bucket, key), status)
        if code:
            text += " " + code
        if message:
            text += ": " + message
        return S3Error(text, status=status, code=code)

    # -- operations ----------------------------------------------------

    def head_object(self, bucket, key):
        """Return the object's headers, or None if it does not exist."""
        try:
            _, headers, _ = self.request("HEAD", bucket, key)
        except S3Error as e:
            if e.status == 404:
                return None
            raise
        return headers

    def get_object(self, bucket, key):
        """Return the object's bytes."""
        return self.request("GET", bucket, key)[2]

    def download_file(self, bucket, key, path):
        """Stream an object into path: written to a temp file beside it,
        fsynced, then renamed, so path never holds a partial object."""
        d = os.path.dirname(path) or "."
        tmp = os.path.join(d, ".%s.part-%d" % (os.path.basename(path), os.getpid()))

        def sink(resp):
            with open(tmp, "wb") as out:
                while True:
                    b = resp.read(CHUNK)
                    if not b:
                        break
                    out.write(b)
                out.flush()
                os.fsync(out.fileno())

        try:
            self.request("GET", bucket, key, sink=sink)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_object(self, bucket, key, data=b"", content_type=None):
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        return self.request("PUT", bucket, key, headers=headers, body=data)

    def upload_file(self, path, bucket, key, content_type=None):
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        return self.request("PUT", bucket, key, headers=headers, body_path=path)

    def create_bucket(self, bucket):
        return self.request("PUT", bucket)

    def delete_object(self, bucket, key):
        return self.request("DELETE", bucket, key)

    def list_objects(self, bucket, prefix="", delimiter=None):
        """Yield ("key", key, size) for each object and ("prefix", p, 0) for
        each common prefix, following ListObjectsV2 continuation tokens."""
        token = None
        while True:
            params = {"list-type": "2"}
            if prefix:
                params["prefix"] = prefix
            if delimiter:
                params["delimiter"] = delimiter
            if token:
                params["continuation-token"] = token
            data = self.request("GET", bucket, params=params)[2]
            root = ET.fromstring(data)
            for c in root:
                tag = _strip_ns(c.tag)
                if tag == "Contents":
                    yield "key", _text(c, "Key"), int(_text(c, "Size", "0") or 0)
                elif tag == "CommonPrefixes":
                    yield "prefix", _text(c, "Prefix"), 0
            if _text(root, "IsTruncated").lower() != "true":
                return
            token = _text(root, "NextContinuationToken")
            if not token:
                return

    def list_keys(self, bucket, prefix=""):
        return [(k, size) for kind, k, size in self.list_objects(bucket, prefix)
                if kind == "key"]
