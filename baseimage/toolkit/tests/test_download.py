import contextlib
import io
import os
import tempfile
import unittest
from unittest import mock

from malocal_toolkit import download, s3
from tests.fakes3 import FakeClient, tree

CODE = {
    "x/new/main.py": b"print('main')\n",
    "x/new/pkg/__init__.py": b"",
    "x/new/pkg/deep/er/model.py": b"W = 1\n",
    "x/new/data dir/with spaces.txt": b"spaces\n",
    "x/new/数据/ünïcødé é.txt": "non-ascii ✓\n".encode("utf-8"),
    "x/new/empty/": b"",
    "x/newer/not-this.py": b"",
    "x/other.py": b"",
}


class Download(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.target = os.path.join(self.tmp.name, "user-job-dir", "new")

    def test_nested_spaces_non_ascii(self):
        c = FakeClient({"b": CODE})
        for url in ("s3://b/x/new/", "obs://b/x/new"):
            with self.subTest(url=url):
                n = download.download_dir(c, url, self.target, workers=4)
                self.assertEqual(n, 5)
                self.assertEqual(tree(self.target), {
                    "main.py": b"print('main')\n",
                    os.path.join("pkg", "__init__.py"): b"",
                    os.path.join("pkg", "deep", "er", "model.py"): b"W = 1\n",
                    os.path.join("data dir", "with spaces.txt"): b"spaces\n",
                    os.path.join("数据", "ünïcødé é.txt"): "non-ascii ✓\n".encode("utf-8"),
                })
                self.assertTrue(os.path.isdir(os.path.join(self.target, "empty")))

    def test_refuses_dotdot_before_writing_anything(self):
        for bad in ("x/new/../../evil.py", "x/new/a/../../evil.py", "x/new/..",
                    "x/new//etc/evil", "x/new/ok/\x00evil"):
            with self.subTest(key=bad):
                c = FakeClient({"b": {"x/new/a.py": b"a", bad: b"evil"}})
                with self.assertRaises(download.UnsafeKey):
                    download.download_dir(c, "s3://b/x/new/", self.target)
                self.assertEqual(c.gets, [])
                self.assertFalse(os.path.exists(os.path.join(self.target, "a.py")))
                self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "evil.py")))
                self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "user-job-dir", "evil.py")))

    def test_refuses_symlink_out_of_target(self):
        outside = os.path.join(self.tmp.name, "outside")
        os.makedirs(outside)
        os.makedirs(self.target)
        os.symlink(outside, os.path.join(self.target, "link"))
        c = FakeClient({"b": {"x/new/link/evil.py": b"evil"}})
        with self.assertRaises(download.UnsafeKey):
            download.download_dir(c, "s3://b/x/new/", self.target)
        self.assertEqual(os.listdir(outside), [])

    def test_local_path(self):
        t = "/t"
        self.assertEqual(download.local_path(t, "a/./b"), "/t/a/b")
        self.assertEqual(download.local_path(t, "a b/ü"), "/t/a b/ü")
        for bad in ("", "/abs", "..", "a/../..", "../x"):
            with self.subTest(rel=bad):
                with self.assertRaises(download.UnsafeKey):
                    download.local_path(t, bad)

    def test_empty_or_missing(self):
        c = FakeClient({"b": {"x/other.py": b""}})
        with self.assertRaises(s3.S3Error):
            download.download_dir(c, "s3://b/x/new/", self.target)
        with self.assertRaises(s3.S3Error):
            download.download_dir(c, "s3://nobucket/x/", self.target)

    def test_main_reports_failure(self):
        c = FakeClient({"b": {"x/new/../evil": b""}})
        err = io.StringIO()
        with mock.patch.object(s3, "Client", return_value=c), contextlib.redirect_stderr(err):
            rc = download.main(["s3://b/x/new/", self.target])
        self.assertEqual(rc, 1)
        self.assertIn("refusing key", err.getvalue())
        self.assertIn("outside the target dir", err.getvalue())

    def test_main_success(self):
        c = FakeClient({"b": CODE})
        out = io.StringIO()
        with mock.patch.object(s3, "Client", return_value=c), contextlib.redirect_stdout(out):
            rc = download.main(["s3://b/x/new/", self.target])
        self.assertEqual(rc, 0)
        self.assertIn("downloaded 5 files", out.getvalue())


if __name__ == "__main__":
    unittest.main()
