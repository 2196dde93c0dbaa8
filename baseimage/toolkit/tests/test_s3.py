import datetime
import hashlib
import os
import unittest
from unittest import mock

from malocal_toolkit import s3

try:
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
    import botocore.utils
except ImportError:  # pragma: no cover - reported by the Go test
    botocore = None

NOW = datetime.datetime(2026, 11, 28, 12, 34, 56)
ENDPOINT = "http://127.0.0.1:9000"
AK, SK, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "cn-north-4"


def botocore_authorization(method, bucket, key, params, headers, body):
    path = "/" + bucket
    if key:
        path += "/" + botocore.utils.percent_encode(key, safe="/~")
    req = botocore.awsrequest.AWSRequest(method=method, url=ENDPOINT + path,
                                         headers=dict(headers), data=body, params=params)
    auth = botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(AK, SK), "s3", REGION)
    with mock.patch("botocore.auth.datetime") as dt:
        dt.datetime.utcnow.return_value = NOW
        auth.add_auth(req)
    return req.headers["Authorization"]


def ours(method, bucket, key, params, headers, body):
    c = s3.Client(endpoint=ENDPOINT, access_key=AK, secret_key=SK, region=REGION)
    got = s3.sign(method, c.netloc, c._path(bucket, key), params, headers,
                  hashlib.sha256(body).hexdigest(), AK, SK, REGION,
                  NOW.replace(tzinfo=datetime.timezone.utc))
    return got["Authorization"]


@unittest.skipIf(botocore is None and os.environ.get("CI") != "true",
                 "botocore not installed (apt-get install python3-boto3)")
class SignatureMatchesBotocore(unittest.TestCase):
    CASES = [
        ("GET", "bucket", "code/main.py", {}, {}, b""),
        ("HEAD", "bucket", "dir with spaces/ünïcødé 文件.py", {}, {}, b""),
        ("DELETE", "bucket", "a+b=c&d/e~f!g*h'(i)j,k;l:m@n$o", {}, {}, b""),
        ("PUT", "bucket", "logs/dls-task-0.log", {},
         {"Content-Type": "text/plain; charset=utf-8"}, b"hello\nworld\n"),
        ("PUT", "bucket", "dir/", {}, {}, b""),
        ("GET", "bucket", "", {"list-type": "2", "prefix": "x/new dir/ü/",
                               "continuation-token": "a/b+c==", "delimiter": "/"}, {}, b""),
    ]

    def test_same_authorization(self):
        for case in self.CASES:
            with self.subTest(case=case[:3]):
                self.assertEqual(ours(*case), botocore_authorization(*case))


class SigningKey(unittest.TestCase):
    def test_aws_documented_example(self):
        # The signing key example of the AWS SigV4 documentation.
        key = s3.signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215",
                             "us-east-1", "iam")
        self.assertEqual(key.hex(),
                         "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d")


class URLs(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(s3.parse_url("s3://b/x/new/"), ("b", "x/new/"))
        self.assertEqual(s3.parse_url("obs://b"), ("b", ""))
        self.assertEqual(s3.parse_url("obs://b/k k"), ("b", "k k"))
        for bad in ("http://b/x", "/local", "s3:///x"):
            with self.assertRaises(ValueError):
                s3.parse_url(bad)

    def test_endpoint_from_env(self):
        env = {"S3_ENDPOINT": "10.0.0.1:9000", "AWS_ACCESS_KEY_ID": "a",
               "AWS_SECRET_ACCESS_KEY": "s"}
        with mock.patch.dict(os.environ, env, clear=True):
            c = s3.Client()
        self.assertEqual((c.scheme, c.netloc, c.region), ("http", "10.0.0.1:9000", "us-east-1"))
        env["AWS_ENDPOINT_URL"] = "https://obs.example:8443/"
        env["AWS_DEFAULT_REGION"] = "cn-north-4"
        with mock.patch.dict(os.environ, env, clear=True):
            c = s3.Client()
        self.assertEqual((c.scheme, c.netloc, c.region), ("https", "obs.example:8443", "cn-north-4"))

    def test_no_endpoint(self):
        with mock.patch.dict(os.environ, {}, clear=True):
            with self.assertRaises(s3.S3Error):
                s3.Client()

    def test_path_encoding(self):
        c = s3.Client(endpoint=ENDPOINT, access_key="a", secret_key="s")
        self.assertEqual(c._path("b", "a b/ü~+.py"), "/b/a%20b/%C3%BC~%2B.py")


if __name__ == "__main__":
    unittest.main()
