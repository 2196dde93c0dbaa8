import os
import tempfile
import unittest
from unittest import mock

import moxing as mox
from malocal_toolkit import upload_log
from tests.fakes3 import FakeClient, tree


class Moxing(unittest.TestCase):
    def setUp(self):
        self.client = FakeClient({"b": {}})
        p = mock.patch("moxing.file._client", return_value=self.client)
        p.start()
        self.addCleanup(p.stop)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.src = os.path.join(self.tmp.name, "src")
        files = {"a.txt": b"a", "sub dir/b ü.txt": b"b", "sub dir/deep/c.bin": b"\x00\x01"}
        for rel, data in files.items():
            p = os.path.join(self.src, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        self.files = {os.path.normpath(k): v for k, v in files.items()}

    def test_copy_parallel_round_trip(self):
        for scheme in ("s3", "obs"):
            with self.subTest(scheme=scheme):
                url = scheme + "://b/run/out"
                mox.file.copy_parallel(self.src, url)
                self.assertEqual(self.client.buckets["b"]["run/out/sub dir/b ü.txt"], b"b")
                mox.file.copy_parallel(url, url + "-copy")
                dst = os.path.join(self.tmp.name, "dst-" + scheme)
                mox.file.copy_parallel(url + "-copy", dst)
                self.assertEqual(tree(dst), self.files)

    def test_copy_parallel_file_list(self):
        mox.file.copy_parallel(self.src, "s3://b/part", file_list=["a.txt"])
        self.assertEqual(list(self.client.buckets["b"]), ["part/a.txt"])
        with self.assertRaises(ValueError):
            mox.file.copy_parallel(self.src, "s3://b/part", file_list=["../x"])

    def test_exists_list_make_dirs_remove(self):
        mox.file.copy_parallel(self.src, "s3://b/d")
        self.assertTrue(mox.file.exists("s3://b/d"))
        self.assertTrue(mox.file.exists("s3://b/d/a.txt"))
        self.assertTrue(mox.file.exists("obs://b/d/sub dir"))
        self.assertFalse(mox.file.exists("s3://b/d/nope"))
        self.assertFalse(mox.file.exists("s3://nobucket/d"))
        self.assertTrue(mox.file.is_directory("s3://b/d/sub dir"))
        self.assertFalse(mox.file.is_directory("s3://b/d/a.txt"))
        self.assertEqual(mox.file.list_directory("s3://b/d"), ["a.txt", "sub dir"])
        self.assertEqual(mox.file.list_directory("s3://b/d", recursive=True),
                         ["a.txt", "sub dir", "sub dir/b ü.txt", "sub dir/deep",
                          "sub dir/deep/c.bin"])
        self.assertEqual(mox.file.list_directory(self.src), ["a.txt", "sub dir"])
        self.assertEqual(mox.file.list_directory(self.src, recursive=True),
                         ["a.txt", "sub dir", "sub dir/b ü.txt", "sub dir/deep",
                          "sub dir/deep/c.bin"])

        mox.file.make_dirs("s3://b/empty/dir")
        self.assertTrue(mox.file.exists("s3://b/empty/dir"))
        self.assertTrue(mox.file.is_directory("s3://b/empty/dir"))
        self.assertEqual(mox.file.list_directory("s3://b/empty"), ["dir"])

        with self.assertRaises(IsADirectoryError):
            mox.file.remove("s3://b/d")
        mox.file.remove("s3://b/d/a.txt")
        self.assertFalse(mox.file.exists("s3://b/d/a.txt"))
        mox.file.remove("s3://b/d", recursive=True)
        self.assertFalse(mox.file.exists("s3://b/d"))
        with self.assertRaises(FileNotFoundError):
            mox.file.remove("s3://b/d/a.txt")

    def test_copy_read_write_size_rename_file(self):
        mox.file.copy(os.path.join(self.src, "a.txt"), "s3://b/one/a.txt")
        mox.file.copy("s3://b/one/a.txt", "obs://b/two/a.txt")
        out = os.path.join(self.tmp.name, "new", "a.txt")
        mox.file.copy("obs://b/two/a.txt", out)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"a")
        mox.file.write("s3://b/t.txt", "ünï\n")
        self.assertEqual(mox.file.read("s3://b/t.txt"), "ünï\n")
        self.assertEqual(mox.file.get_size("s3://b/t.txt"), len("ünï\n".encode()))
        self.assertEqual(mox.file.get_size("s3://b/one", recursive=True), 1)
        mox.file.rename("s3://b/t.txt", "s3://b/u.txt")
        self.assertFalse(mox.file.exists("s3://b/t.txt"))
        with mox.file.File("s3://b/f.txt", "w") as f:
            f.write("line1\nline2\n")
        with mox.file.File("s3://b/f.txt", "r") as f:
            self.assertEqual(f.readlines(), ["line1\n", "line2\n"])
        with mox.file.File("s3://b/f.txt", "a") as f:
            f.write("line3\n")
        with mox.file.File("s3://b/f.txt", "rb") as f:
            self.assertEqual(f.read(), b"line1\nline2\nline3\n")
        local = os.path.join(self.tmp.name, "local.txt")
        with mox.file.File(local, "w") as f:
            f.write("x")
        self.assertEqual(mox.file.read(local), "x")

    def test_upload_log(self):
        log = os.path.join(self.tmp.name, "dls-task-2.log")
        with open(log, "w") as f:
            f.write("log line\n")
        dest = upload_log.upload_log(self.client, log, "obs://b/logs")
        self.assertEqual(dest, "s3://b/logs/dls-task-2.log")
        self.assertEqual(self.client.buckets["b"]["logs/dls-task-2.log"], b"log line\n")


if __name__ == "__main__":
    unittest.main()
